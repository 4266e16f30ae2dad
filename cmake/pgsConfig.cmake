# find_package(pgs CONFIG) gives two imported targets:
#   pgs::pgs         libpgs.so.0
#   pgs::pgs_static  libpgs.a, linking pgs's dependencies after it
include(CMakeFindDependencyMacro)
find_dependency(Threads)
find_dependency(SQLite3)
find_dependency(PostgreSQL)
# lmdb and xxhash ship no CMake package: found here, as pgs's build does.
foreach(dep lmdb xxhash)
  if(NOT TARGET pgs::${dep})
    find_library(PGS_${dep}_LIBRARY ${dep})
    if(NOT PGS_${dep}_LIBRARY)
      set(pgs_FOUND FALSE)
      set(pgs_NOT_FOUND_MESSAGE "pgs needs lib${dep}, which was not found")
      return()
    endif()
    add_library(pgs::${dep} UNKNOWN IMPORTED)
    set_target_properties(pgs::${dep} PROPERTIES IMPORTED_LOCATION "${PGS_${dep}_LIBRARY}")
  endif()
endforeach()
include(${CMAKE_CURRENT_LIST_DIR}/pgsTargets.cmake)
