# The compiled mode refuses to link a file whose Eigen memory settings differ from the library's
# (extern_templates.hpp, DEEPSTRUCT_COMPILED_ABI): such a file frees the library's matrices with
# another allocator and corrupts the heap. OBJECTS were compiled with EIGEN_MAX_ALIGN_BYTES=128,
# LIBRARY (deepstruct_compiled) with the build's flags; linking them must fail and name the
# setting. Run with -DCXX=<compiler> -DOBJECTS=<object files> -DLIBRARY=<static library> -DWORK=<dir>
# -DGOOD_OBJECTS=<objects built with the library's settings> -DLIBRARY_OBJECTS=<the library's objects>
# [-DLINK_FLAGS="<flags the build links with>"] (the sanitizers' runtime in a sanitizer build).
separate_arguments(_link_flags UNIX_COMMAND "${LINK_FLAGS}")
execute_process(COMMAND ${CXX} ${_link_flags} ${OBJECTS} ${LIBRARY} -o ${WORK}/compiled_mode_abi_mismatch
                RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(_rc EQUAL 0)
  message(FATAL_ERROR "expected the link of a file built with EIGEN_MAX_ALIGN_BYTES=128 against the compiled library to fail, it succeeded")
endif()
set(_symbol "compiled_library_was_not_built_with_EIGEN_DEFAULT_ALIGN_BYTES_128_MALLOC_ALREADY_ALIGNED_")
string(FIND "${_out}" "${_symbol}" _at)
if(_at EQUAL -1)
  message(FATAL_ERROR "expected the linker to name ${_symbol}..., found:\n${_out}")
endif()
# Nothing else may be missing: the ABI reference is the reason the link fails.
string(REGEX MATCHALL "undefined reference to [^\n]*" _missing "${_out}")
list(FILTER _missing EXCLUDE REGEX "${_symbol}")
if(_missing)
  message(FATAL_ERROR "expected only the ABI reference to be undefined, found:\n${_out}")
endif()
# And the symbol is weak, as the instantiations are: a program holding the library's code twice
# (two libraries that each compiled instantiate.hpp) still links.
execute_process(COMMAND ${CXX} ${_link_flags} ${GOOD_OBJECTS} ${LIBRARY_OBJECTS} ${LIBRARY_OBJECTS} -o ${WORK}/compiled_mode_abi_twice
                RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "expected a program with the instantiations twice to link, found:\n${_out}")
endif()
message(STATUS "compiled mode: a file built with other Eigen memory settings does not link (${_symbol}...); the library twice does")
