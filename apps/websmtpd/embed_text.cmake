# cmake -DIN=<file> -DOUT=<header> -DNAME=<identifier> -P embed_text.cmake
# Writes a header holding IN's text as `inline constexpr std::string_view NAME`.
file(READ "${IN}" text)
string(FIND "${text}" ")embedded\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw string delimiter )embedded\"")
endif()
file(WRITE "${OUT}.tmp" "#pragma once\n// Generated from ${IN} by embed_text.cmake; do not edit.\n#include <string_view>\n\ninline constexpr std::string_view ${NAME} = R\"embedded(${text})embedded\";\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
