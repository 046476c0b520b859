// rmsnorm.cuh -- RMSNorm over the last axis (vca_ref/ops/rmsnorm.py), one row at a time.
// Needs common.cuh and reduce.cuh first.
// Reference: vca_ref/ops/rmsnorm.py -- each "// ref:" line below is a line of it, verbatim
// (tests/test_fast_parity.py checks), and the code under it computes that line.
//
//   forward:  rstd = 1 / sqrt(mean(z^2) + eps)     zhat = z * rstd     y = zhat * w
//   backward: g = dout * w    dz = rstd * (g - zhat * mean(g * zhat))
// dw = sum over rows of dout * zhat is a column reduction; it stays a CuPy sum.
#ifndef VCA_RMSNORM_CUH
#define VCA_RMSNORM_CUH
#if !defined(VCA_COMMON_CUH) || !defined(VCA_REDUCE_CUH)
#error "rmsnorm.cuh needs common.cuh and reduce.cuh first"
#endif

namespace vca {

template <typename T>
VCA_HD T rmsnorm_rstd(T sumsq, int d, T eps) {
    // ref: rstd = 1.0 / xp.sqrt((z * z).mean(-1, keepdims=True) + eps)
    // (the mean is the row's sum of squares over d)
    return T(1.0) / xsqrt(sumsq / T(d) + eps);
}

// One row: z (d,), w (d,) -> y (d,), zhat (d,), *rstd.
template <typename T, typename Team>
VCA_HD void rmsnorm_forward_row(const Team& team, const T* z, const T* w, T* y, T* zhat, T* rstd,
                                int d, T eps) {
    // 1. (z * z).sum(axis=-1)
    T part = T(0);
    for (int k = team.lane; k < d; k += team.size) part += z[k] * z[k];
    const T r = rmsnorm_rstd(team.sum(part), d, eps);
    // 2. the two lines below, lane by lane
    // ref: zhat = z * rstd
    // ref: y = zhat * w
    for (int k = team.lane; k < d; k += team.size) {
        const T zh = z[k] * r;
        zhat[k] = zh;
        y[k] = zh * w[k];
    }
    if (team.lane == 0) *rstd = r;
}

// One row: dy (d,), zhat (d,), w (d,), rstd (scalar of the row) -> dz (d,).
template <typename T, typename Team>
VCA_HD void rmsnorm_backward_row(const Team& team, const T* dy, const T* zhat, const T* w, T rstd,
                                 T* dz, int d) {
    // 1. (g * zhat).mean(-1, keepdims=True), with
    // ref: g = dout * w
    T part = T(0);
    for (int k = team.lane; k < d; k += team.size) part += dy[k] * w[k] * zhat[k];
    const T mean_gz = team.sum(part) / T(d);
    // 2. the line below, lane by lane
    // ref: dz = rstd * (g - zhat * (g * zhat).mean(-1, keepdims=True))
    for (int k = team.lane; k < d; k += team.size)
        dz[k] = rstd * (dy[k] * w[k] - zhat[k] * mean_gz);
}

}  // namespace vca

#endif  // VCA_RMSNORM_CUH
