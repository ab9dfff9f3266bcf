# Sourced by the scripts that build, test, demo or benchmark dml: chooses OpenBLAS's kernels.
# Debian's OpenBLAS picks them from the processor's model name, and a model it does not know
# (AMD Zen 5, or a virtual machine that reports a generic "Intel Xeon Processor") gets the
# SSE3 "Prescott" kernels, several times slower, or on some processors wrong results. When
# OPENBLAS_CORETYPE is unset and the processor has AVX2 and FMA, the Haswell kernels are used;
# a value already set is left as it is.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -r /proc/cpuinfo ] &&
   grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=Haswell
fi
