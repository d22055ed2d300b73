# Vendoring: copy include/ somewhere else and compile a consumer with nothing but -I flags.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/third_party/deepstruct)
file(COPY ${SOURCE_DIR}/include DESTINATION ${WORK_DIR}/third_party/deepstruct)
execute_process(
  COMMAND ${CXX} -std=c++17 -O1 -I${WORK_DIR}/third_party/deepstruct/include -I${EIGEN_INCLUDE}
          ${CONSUMER} -o ${WORK_DIR}/consumer
  RESULT_VARIABLE compile_result)
if(NOT compile_result EQUAL 0)
  message(FATAL_ERROR "vendored consumer failed to compile (${compile_result})")
endif()
execute_process(COMMAND ${WORK_DIR}/consumer RESULT_VARIABLE run_result)
if(NOT run_result EQUAL 0)
  message(FATAL_ERROR "vendored consumer failed to run (${run_result})")
endif()
