// common.cuh -- the first file of every kernel preamble: the host/device shim and the
// per-type math that keeps float kernels in float.
//
// The same text is compiled twice:
//   * by NVRTC, as the preamble of a CuPy ElementwiseKernel/RawKernel (CuPy adds -ftz=true);
//   * by g++ in tests/test_kernels_cpu.py, so the scalar math is checked on a CPU.
// NVRTC defines __CUDACC_RTC__ (nvcc defines __CUDACC__); without either we are on the host.
//
// Rules for every .cuh here:
//   - no #include of each other (CuPy's cache key is the source text; the files are
//     concatenated in order by vca_ref.kernels.cuh_text), each checks VCA_COMMON_CUH instead;
//   - templates on T (float or double); literals are written T(0.5), never 0.5, and the math
//     goes through the x* overloads below, so a float instantiation never touches double
//     (g++ -Wdouble-promotion -Wfloat-conversion -Werror and the NVRTC PTX scan enforce it);
//   - each function is the twin of one NumPy line of vca_ref/ops, quoted next to it, with the
//     operations in the same order (the host build uses -ffp-contract=off, so a function without
//     transcendentals reproduces NumPy bit for bit).
#ifndef VCA_COMMON_CUH
#define VCA_COMMON_CUH

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define VCA_DEVICE_COMPILE 1
#define VCA_HD __device__ __forceinline__
#else
#include <math.h>
#define VCA_HD inline
#endif

namespace vca {

// Per-type math ("xerf" reads as "xp.erf"): the float overload calls the f-suffixed function.
VCA_HD float xerf(float x) { return erff(x); }
VCA_HD double xerf(double x) { return erf(x); }
VCA_HD float xtanh(float x) { return tanhf(x); }
VCA_HD double xtanh(double x) { return tanh(x); }
VCA_HD float xexp(float x) { return expf(x); }
VCA_HD double xexp(double x) { return exp(x); }
VCA_HD float xsqrt(float x) { return sqrtf(x); }
VCA_HD double xsqrt(double x) { return sqrt(x); }

}  // namespace vca

#endif  // VCA_COMMON_CUH
