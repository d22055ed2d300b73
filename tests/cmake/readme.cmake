# The README is the front door: its first C++ example must compile and run, and CI (.ci/run)
# must run the README's test command word for word.
file(READ ${SOURCE_DIR}/README.md readme)

# 1. The first ```cpp block.
string(FIND "${readme}" "```cpp\n" start)
if(start EQUAL -1)
  message(FATAL_ERROR "README.md: expected a ```cpp example, found none")
endif()
math(EXPR start "${start} + 7")
string(SUBSTRING "${readme}" ${start} -1 rest)
string(FIND "${rest}" "```" stop)
string(SUBSTRING "${rest}" 0 ${stop} example)
file(MAKE_DIRECTORY ${WORK_DIR})
file(WRITE ${WORK_DIR}/readme_example.cpp "${example}")
execute_process(COMMAND ${CXX} -std=c++17 -O1 -I${SOURCE_DIR}/include -I${EIGEN_INCLUDE}
                        ${WORK_DIR}/readme_example.cpp -o ${WORK_DIR}/readme_example
                RESULT_VARIABLE compiled)
if(NOT compiled EQUAL 0)
  message(FATAL_ERROR "README.md: the C++ example does not compile")
endif()
execute_process(COMMAND ${WORK_DIR}/readme_example RESULT_VARIABLE ran OUTPUT_VARIABLE out)
message(STATUS "README example printed:\n${out}")
if(NOT ran EQUAL 0 OR NOT out MATCHES "density 0\\.1")
  message(FATAL_ERROR "README.md: the C++ example failed (${ran}) or did not print density 0.1")
endif()

# 2. .ci/run runs the README's test command.
file(STRINGS ${SOURCE_DIR}/.ci/run ci_lines REGEX "ctest")
list(LENGTH ci_lines n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR ".ci/run: expected one line running ctest, found ${n}")
endif()
string(STRIP "${ci_lines}" ci_command)
string(FIND "${readme}" "   ${ci_command}\n" found)
if(found EQUAL -1)
  message(FATAL_ERROR "README.md does not show the command .ci/run runs:\n${ci_command}")
endif()
