# Every complete C++ example in the docs compiles and runs: each ```cpp block that contains
# "int main(" is written to its own file, compiled with -std=c++17 -O1 against include/, Eigen and
# the system include path (Boost), and run; blocks without main() are snippets and are skipped.
#
#   cmake -DSOURCE_DIR=<repo> -DWORK_DIR=<scratch> -DCXX=<c++ compiler> -DEIGEN_INCLUDE=<dir(s)>
#         [-DDOCS=docs/a.md,docs/b.md] [-DCXXFLAGS="-Wall -Wextra"] [-DCOMPILED_LIBRARY=<lib.a>]
#         [-DPART=<i> -DPARTS=<n>] -P tests/cmake/docs_examples.cmake
#
# PART and PARTS (optional): check only examples i, i + n, i + 2n, ... (1-based, counted over all
# the files in order), so that n tests share the examples and ctest -j runs them side by side.
# COMPILED_LIBRARY (optional): compile the examples in the compiled mode (DEEPSTRUCT_EXTERN_TEMPLATES,
# docs/benchmarks.md#compile-time) and link them against that deepstruct::compiled archive, instead
# of instantiating the library in every example (ctest does: 0.6-0.7x the time). CXXFLAGS must then
# hold the flags the archive was built with that decide Eigen's memory settings (-march=...,
# sanitizers), or the link fails on DEEPSTRUCT_COMPILED_ABI.
#
# DOCS (optional) lists the markdown files to check, relative to SOURCE_DIR or absolute, separated
# by commas, semicolons or spaces; the default is every docs/*.md. Each example runs in its own
# directory under WORK_DIR (examples may write files). All examples are tried; the script then fails
# naming every doc file, block number and line whose example did not compile or exited non-zero.
cmake_minimum_required(VERSION 3.16)

foreach(_var IN ITEMS SOURCE_DIR WORK_DIR CXX EIGEN_INCLUDE)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "docs_examples.cmake: expected -D${_var}=..., found none")
  endif()
endforeach()

# The files to check.
if(DEFINED DOCS AND NOT "${DOCS}" STREQUAL "")
  string(REGEX REPLACE "[,; ]+" ";" _docs "${DOCS}")
  set(_files "")
  foreach(_doc IN LISTS _docs)
    if(_doc STREQUAL "")
      continue()
    endif()
    if(NOT IS_ABSOLUTE "${_doc}")
      set(_doc "${SOURCE_DIR}/${_doc}")
    endif()
    if(NOT EXISTS "${_doc}")
      message(FATAL_ERROR "docs_examples.cmake: expected a markdown file, found no file ${_doc}")
    endif()
    list(APPEND _files "${_doc}")
  endforeach()
else()
  file(GLOB _files "${SOURCE_DIR}/docs/*.md")
  list(SORT _files)
endif()

set(_includes "-I${SOURCE_DIR}/include")
string(REGEX REPLACE "[,; ]+" ";" _eigen_dirs "${EIGEN_INCLUDE}")
foreach(_dir IN LISTS _eigen_dirs)
  if(NOT _dir STREQUAL "")
    list(APPEND _includes "-I${_dir}")
  endif()
endforeach()
set(_extra_flags "")
if(DEFINED CXXFLAGS AND NOT "${CXXFLAGS}" STREQUAL "")
  separate_arguments(_extra_flags UNIX_COMMAND "${CXXFLAGS}")
endif()
set(_part 1)
set(_parts 1)
if(DEFINED PARTS AND NOT "${PARTS}" STREQUAL "")
  if(NOT PARTS MATCHES "^[1-9][0-9]*$" OR NOT PART MATCHES "^[1-9][0-9]*$" OR PART GREATER PARTS)
    message(FATAL_ERROR "docs_examples.cmake: expected -DPART=<i> -DPARTS=<n> with 1 <= i <= n, found PART=${PART} PARTS=${PARTS}")
  endif()
  set(_part ${PART})
  set(_parts ${PARTS})
endif()
set(_library "")
if(DEFINED COMPILED_LIBRARY AND NOT "${COMPILED_LIBRARY}" STREQUAL "")
  if(NOT EXISTS "${COMPILED_LIBRARY}")
    message(FATAL_ERROR "docs_examples.cmake: expected the deepstruct::compiled archive, found no file ${COMPILED_LIBRARY} "
                        "(build the target deepstruct_compiled first)")
  endif()
  list(APPEND _extra_flags -DDEEPSTRUCT_EXTERN_TEMPLATES=1)
  set(_library "${COMPILED_LIBRARY}")
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(_failures "")
set(_examples 0)
set(_index 0)  # examples seen in all the files so far (for PART / PARTS)

foreach(_file IN LISTS _files)
  file(RELATIVE_PATH _rel "${SOURCE_DIR}" "${_file}")
  if(_rel MATCHES "^\\.\\./")
    set(_rel "${_file}")  # outside the source tree: name it by its absolute path
  endif()
  file(READ "${_file}" _text)
  # A leading newline lets every fence be found as "\n```cpp\n" (fences start a line).
  set(_text "\n${_text}")
  string(MAKE_C_IDENTIFIER "${_rel}" _id)
  set(_block 0)
  set(_offset 0)
  while(TRUE)
    string(SUBSTRING "${_text}" ${_offset} -1 _rest)
    string(FIND "${_rest}" "\n```cpp\n" _start)
    if(_start EQUAL -1)
      break()
    endif()
    math(EXPR _block "${_block} + 1")
    math(EXPR _code_start "${_start} + 8")
    string(SUBSTRING "${_rest}" ${_code_start} -1 _after)
    # The closing fence: a line starting with ``` (the code keeps its last newline).
    string(FIND "${_after}" "\n```" _stop)
    if(_stop EQUAL -1)
      list(APPEND _failures "${_rel}: block ${_block}: no closing ``` fence")
      break()
    endif()
    math(EXPR _code_length "${_stop} + 1")
    string(SUBSTRING "${_after}" 0 ${_code_length} _code)
    # Line of the opening fence in the file (the leading newline added above offsets the count).
    math(EXPR _prefix_length "${_offset} + ${_start} + 1")
    string(SUBSTRING "${_text}" 0 ${_prefix_length} _prefix)
    string(REGEX MATCHALL "\n" _newlines "${_prefix}")
    list(LENGTH _newlines _line)
    math(EXPR _offset "${_offset} + ${_code_start} + ${_stop} + 4")

    string(FIND "${_code}" "int main(" _has_main)
    if(_has_main EQUAL -1)
      continue()  # a snippet, not a program
    endif()
    math(EXPR _index "${_index} + 1")
    math(EXPR _mine "(${_index} - 1) % ${_parts} + 1")
    if(NOT _mine EQUAL _part)
      continue()  # another part's example
    endif()
    math(EXPR _examples "${_examples} + 1")
    set(_where "${_rel}: block ${_block} (line ${_line})")
    set(_dir "${WORK_DIR}/${_id}_${_block}")
    file(MAKE_DIRECTORY "${_dir}")
    file(WRITE "${_dir}/example.cpp" "${_code}")
    message(STATUS "${_where}: compiling")
    execute_process(COMMAND "${CXX}" -std=c++17 -O1 ${_includes} ${_extra_flags} example.cpp ${_library} -o example
                    WORKING_DIRECTORY "${_dir}"
                    RESULT_VARIABLE _compiled OUTPUT_VARIABLE _compile_out ERROR_VARIABLE _compile_out)
    if(NOT _compiled EQUAL 0)
      message("${_where}: does not compile (${_dir}/example.cpp):\n${_compile_out}")
      list(APPEND _failures "${_where}: does not compile")
      continue()
    endif()
    execute_process(COMMAND "${_dir}/example" WORKING_DIRECTORY "${_dir}" TIMEOUT 300
                    RESULT_VARIABLE _ran OUTPUT_VARIABLE _run_out ERROR_VARIABLE _run_out)
    if(NOT _ran EQUAL 0)
      message("${_where}: exited with ${_ran}; output:\n${_run_out}")
      list(APPEND _failures "${_where}: exited with ${_ran}")
      continue()
    endif()
    message(STATUS "${_where}: ok; output:\n${_run_out}")
  endwhile()
endforeach()

list(LENGTH _files _file_count)
if(_failures)
  string(REPLACE ";" "\n  " _list "${_failures}")
  message(FATAL_ERROR "docs examples failed:\n  ${_list}")
endif()
if(_examples EQUAL 0)
  message(FATAL_ERROR "docs_examples.cmake: expected at least one ```cpp block with int main( in ${_file_count} file(s) "
                      "for part ${_part} of ${_parts}, found ${_index} in all")
endif()
message(STATUS "${_examples} docs examples in ${_file_count} file(s) compiled and ran")
