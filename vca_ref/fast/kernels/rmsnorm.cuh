// rmsnorm.cuh -- RMSNorm over the last axis (vca_ref/ops/rmsnorm.py), one row at a time.
// Needs common.cuh and reduce.cuh first.
//
//   forward:  rstd = 1 / sqrt(mean(z^2) + eps)     zhat = z * rstd     y = zhat * w
//   backward: g = dy * w      dz = rstd * (g - zhat * mean(g * zhat))
// dw = sum over rows of dy * zhat is a column reduction; it stays a CuPy sum.
#ifndef VCA_RMSNORM_CUH
#define VCA_RMSNORM_CUH
#if !defined(VCA_COMMON_CUH) || !defined(VCA_REDUCE_CUH)
#error "rmsnorm.cuh needs common.cuh and reduce.cuh first"
#endif

namespace vca {

template <typename T>
VCA_HD T rmsnorm_rstd(T sumsq, int d, T eps) {
    // rstd = 1.0 / ((z * z).mean(axis=-1, keepdims=True) + eps) ** 0.5      (mean = sum / d)
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
    // 2. zhat = z * rstd;  y = zhat * w
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
    // 1. (g * zhat).mean(axis=-1, keepdims=True),  g = dy * w
    T part = T(0);
    for (int k = team.lane; k < d; k += team.size) part += dy[k] * w[k] * zhat[k];
    const T mean_gz = team.sum(part) / T(d);
    // 2. dz = rstd * (g - zhat * mean(g * zhat))
    for (int k = team.lane; k < d; k += team.size)
        dz[k] = rstd * (dy[k] * w[k] - zhat[k] * mean_gz);
}

}  // namespace vca

#endif  // VCA_RMSNORM_CUH
