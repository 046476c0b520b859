// softmax.cuh -- the softmax backward row update of vca_ref/ops/softmax.py.
// Needs common.cuh and reduce.cuh first.
//
//   y = softmax(x) along the last axis (K entries per row)
//   dx = y * (dy - rowdot),   rowdot = sum_k dy_k y_k
#ifndef VCA_SOFTMAX_CUH
#define VCA_SOFTMAX_CUH
#if !defined(VCA_COMMON_CUH) || !defined(VCA_REDUCE_CUH)
#error "softmax.cuh needs common.cuh and reduce.cuh first"
#endif

namespace vca {

template <typename T>
VCA_HD T softmax_backward_elem(T y, T dy, T rowdot) {
    // y * (dy - rowdot)
    return y * (dy - rowdot);
}

// One row of K entries: dy, y (K,) -> dx (K,).
template <typename T, typename Team>
VCA_HD void softmax_backward_row(const Team& team, const T* dy, const T* y, T* dx, int K) {
    // 1. rowdot = (dy * y).sum(axis=-1, keepdims=True)
    T part = T(0);
    for (int k = team.lane; k < K; k += team.size) part += dy[k] * y[k];
    const T rowdot = team.sum(part);
    // 2. dx = y * (dy - rowdot)
    for (int k = team.lane; k < K; k += team.size)
        dx[k] = softmax_backward_elem(y[k], dy[k], rowdot);
}

}  // namespace vca

#endif  // VCA_SOFTMAX_CUH
