/* fh/shm.h compiled as C++ (meson builds it as C++17 and C++20): the same checks as test_shm_header.c. */
#include "test_shm_header.c"
