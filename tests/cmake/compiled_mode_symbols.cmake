# The compiled mode keeps the library out of a user's translation unit: in the object file of
# tests/benchmarks/compile_time/ffn_forward.cpp (the umbrella header) or of
# tests/compiled_mode_one_header.cpp (one model header) built with DEEPSTRUCT_EXTERN_TEMPLATES, the
# network's constructor and forward are calls (undefined symbols) and no member of the layers or
# the engine is defined. Run with -DNM=<nm> -DOBJECTS=<object files>.
execute_process(COMMAND ${NM} -C ${OBJECTS} OUTPUT_VARIABLE _symbols RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "nm failed (${_rc}) on ${OBJECTS}")
endif()
# (The FFN's constructor is inline: the compiler either calls it or inlines it and calls the
# network builder beneath it.)
foreach(_call IN ITEMS "deepstruct::MaskedDeepFFN<float>::" "deepstruct::MaskedDeepDAN<float>::forward(")
  string(FIND "${_symbols}" " U ${_call}" _at)
  if(_at EQUAL -1)
    message(FATAL_ERROR "expected ${_call} to be called from the library (an undefined symbol), found:\n${_symbols}")
  endif()
endforeach()
string(REGEX MATCHALL "[0-9a-f]+ [TWtw] deepstruct::(MaskedLinear|MaskedLayer|LayerNorm|MaskedDeepDAN|MaskedDeepFFN|detail::Csr|detail::Sparse)[^\n]*" _defined "${_symbols}")
list(FILTER _defined EXCLUDE REGEX "::~|Activations")  # destructors are inline and may be emitted
if(_defined)
  string(REPLACE ";" "\n" _defined "${_defined}")
  message(FATAL_ERROR "expected no member of the layers or the engine in the user's object file, found:\n${_defined}")
endif()
message(STATUS "compiled mode: the user's object file calls the library and defines none of it")
