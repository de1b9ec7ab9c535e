#!/usr/bin/env bash
# Prints pip's --platform flags for x86_64 Linux wheels: every manylinux tag from 2014 (glibc 2.17)
# to glibc 2.28. pip given an explicit --platform accepts only the tags it is handed, and the
# wheels ClipKit needs use several (torch: manylinux_2_28; NVIDIA runtimes: manylinux2014,
# manylinux_2_17, manylinux_2_25).
for minor in 17 18 19 20 21 22 23 24 25 26 27 28; do
  printf -- '--platform manylinux_2_%s_x86_64 ' "$minor"
done
printf -- '--platform manylinux2014_x86_64 --platform linux_x86_64\n'
