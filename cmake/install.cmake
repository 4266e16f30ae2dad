# What `cmake --install` puts under the prefix: pgs.h, libpgs.a,
# libpgs.so.0 (and its links), the pgs command, pgs.pc and the CMake package
# (find_package(pgs CONFIG): pgs::pgs for the shared library,
# pgs::pgs_static for the static one).  Both pgs.pc and the package find
# the prefix from where they were installed, so `--prefix DIR` at install
# time is enough.
include(CMakePackageConfigHelpers)
set(PGS_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/pgs)

install(FILES include/pgs.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS pgs pgs_shared EXPORT pgsTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
# The pgs command finds libpgs.so.0 beside it, under any prefix.
install(TARGETS pgs_tool RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT pgsTargets NAMESPACE pgs:: DESTINATION ${PGS_CMAKE_DIR})
# 0.x: the soname is libpgs.so.0, so a 0.y package serves any 0.x request.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/pgsConfigVersion.cmake
                                 COMPATIBILITY SameMajorVersion)
install(FILES cmake/pgsConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/pgsConfigVersion.cmake
        DESTINATION ${PGS_CMAKE_DIR})

# pgs.pc.  Static linking needs the dependencies: through their own .pc
# files where this system has them (Requires.private), else as -l flags.
# libpq always as -lpq: Debian's libpq.pc lists archives Debian does not
# ship (-lpgcommon -lpgport), so `pkg-config --static` through it fails.
find_package(PkgConfig QUIET)
set(PGS_PC_REQUIRES "")
set(PGS_PC_LIBS " -lpq")
foreach(dep sqlite3:sqlite3 lmdb:lmdb libxxhash:xxhash) # module:library
  string(REPLACE ":" ";" dep ${dep})
  list(GET dep 0 module)
  list(GET dep 1 lib)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(PGS_PC_${lib} QUIET ${module})
  endif()
  if(PGS_PC_${lib}_FOUND)
    string(APPEND PGS_PC_REQUIRES " ${module}")
  else()
    string(APPEND PGS_PC_LIBS " -l${lib}")
  endif()
endforeach()
set(PGS_PC_DIR ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig)
file(RELATIVE_PATH PGS_PC_PREFIX ${PGS_PC_DIR} ${CMAKE_INSTALL_PREFIX})
file(RELATIVE_PATH PGS_PC_LIBDIR ${PGS_PC_DIR} ${CMAKE_INSTALL_FULL_LIBDIR})
file(RELATIVE_PATH PGS_PC_INCLUDEDIR ${PGS_PC_DIR} ${CMAKE_INSTALL_FULL_INCLUDEDIR})
foreach(dir PREFIX LIBDIR INCLUDEDIR)
  string(REGEX REPLACE "/$" "" PGS_PC_${dir} "${PGS_PC_${dir}}")
endforeach()
configure_file(cmake/pgs.pc.in ${CMAKE_CURRENT_BINARY_DIR}/pgs.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/pgs.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
