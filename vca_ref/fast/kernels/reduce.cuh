// reduce.cuh -- "teams" that own one row of a row-wise kernel.  Needs common.cuh first.
//
// A row routine is written once against a team:
//     for (int k = team.lane; k < K; k += team.size) part += ...;   // this lane's share
//     const T total = team.sum(part);                                // every lane gets the total
// On the GPU the team is one thread block (BlockTeam); in the g++ build it is one lane
// (SerialTeam), so tests/test_kernels_cpu.py runs the very same row routine on a CPU.
// The summation order therefore differs from NumPy's pairwise sum; the tests bound that.
#ifndef VCA_REDUCE_CUH
#define VCA_REDUCE_CUH
#ifndef VCA_COMMON_CUH
#error "reduce.cuh needs common.cuh first"
#endif

namespace vca {

struct SerialTeam {
    int lane = 0;
    int size = 1;
    template <typename T>
    VCA_HD T sum(T part) const { return part; }
};

#ifdef VCA_DEVICE_COMPILE
// One thread block per row; blockDim.x must be a multiple of 32 and at most 1024.
struct BlockTeam {
    int lane;
    int size;
    __device__ BlockTeam() : lane(int(threadIdx.x)), size(int(blockDim.x)) {}

    template <typename T>
    __device__ T sum(T part) const {
        __shared__ T warp_sums[32];
        // 1. butterfly inside each warp: every lane of the warp ends with the warp's sum
        for (int offset = 16; offset > 0; offset >>= 1)
            part += __shfl_xor_sync(0xffffffffu, part, offset);
        __syncthreads();                      // a previous sum() may still read warp_sums
        if ((lane & 31) == 0) warp_sums[lane >> 5] = part;
        __syncthreads();
        // 2. every thread adds the warp sums in the same order: one value for the whole block
        T total = T(0);
        for (int w = 0; w < (size >> 5); ++w) total += warp_sums[w];
        return total;
    }
};
#endif  // VCA_DEVICE_COMPILE

}  // namespace vca

#endif  // VCA_REDUCE_CUH
