// Ragged tree attention (see tree_attention.py for the layout and the torch reference).
//
// One block per (query tile, kv head, request): grid (ceil(max_len / qtile), Hk, B). Its rows
// are (query, q-head) pairs: qtile queries times the G q-heads of the kv head, at most ROWS.
// The block walks its request's keys [0, prefix + n) in tiles of KT = 32: the whole block
// stages a K tile (transposed, fp32) and a V tile in shared memory; each warp then updates the
// online-softmax state of its RPW rows, one key per lane. Prefix tiles need no mask; only
// tiles that reach the tree test bits of the bitmask, read straight from global memory.
//
// No host headers (NVRTC): fp16 and bf16 are carried as raw 16-bit patterns and converted by
// hand, so cuda_fp16.h / cuda_bf16.h are not needed either.

struct f16 { unsigned short bits; };
struct bf16 { unsigned short bits; };

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(f16 x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
    return f;
}
__device__ __forceinline__ float to_float(bf16 x) {
    return __uint_as_float(static_cast<unsigned int>(x.bits) << 16);
}

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ f16 from_float<f16>(float x) {
    f16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(x));
    return h;
}
template <> __device__ __forceinline__ bf16 from_float<bf16>(float x) {
    unsigned int u = __float_as_uint(x);
    bf16 b;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        b.bits = 0x7fc0;  // NaN stays NaN
    } else {
        u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
        b.bits = static_cast<unsigned short>(u >> 16);
    }
    return b;
}

__device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// -inf without math.h (NVRTC has no host headers).
__device__ __forceinline__ float neg_inf() { return __uint_as_float(0xff800000u); }

constexpr int KT = 32;        // keys per tile: one per lane
constexpr int NWARPS = 4;
constexpr int NTHREADS = 32 * NWARPS;

template <typename T, int D>
__device__ __forceinline__ void tree_attn(
    const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ out,
    const int* __restrict__ query_starts, const int* __restrict__ prefix_lens,
    const int* __restrict__ request_rows, const int* __restrict__ bitmask, int words,
    int num_q_heads, int num_kv_heads, int qtile,
    long long k_row, long long k_head, long long k_slot,
    long long v_row, long long v_head, long long v_slot, float scale_log2) {
    // fp32 halves the rows so that Qs + Kt + Vs + Ps stay within 48 KiB of static memory.
    constexpr int ROWS = sizeof(T) == 4 ? 16 : 32;
    constexpr int RPW = ROWS / NWARPS;  // rows per warp
    constexpr int DPL = D / 32;         // output dims per lane: lane owns d = lane + 32 * i
    constexpr int KS = KT + 1;          // padded stride of the transposed K tile: no bank conflicts
    __shared__ __align__(16) float Qs[ROWS * D];   // pre-scaled by scale * log2(e)
    __shared__ float Kt[D * KS];                   // Kt[d * KS + key]
    __shared__ T Vs[KT * D];                       // Vs[key * D + d]
    __shared__ __align__(16) float Ps[NWARPS][RPW][KT];

    const int request = blockIdx.z, kv_head = blockIdx.y;
    const int q0 = query_starts[request];
    const int n = query_starts[request + 1] - q0;
    const int t0 = blockIdx.x * qtile;
    if (t0 >= n) return;  // block-uniform: this request's tree is shorter than max_len
    const int group = num_q_heads / num_kv_heads;
    const int num_q = min(qtile, n - t0);
    const int num_rows = num_q * group;
    const int prefix = prefix_lens[request];
    const int num_keys = prefix + n;
    const long long row = request_rows[request];
    const T* kb = k + row * k_row + kv_head * k_head;
    const T* vb = v + row * v_row + kv_head * v_head;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

    // More rows than ROWS only when the head group alone exceeds it (qtile is then 1).
    for (int base = 0; base < num_rows; base += ROWS) {
        __syncthreads();  // Qs of the previous pass is no longer read
        for (int i = tid; i < ROWS * D; i += NTHREADS) {
            const int r = base + i / D, d = i % D;
            float x = 0.f;
            if (r < num_rows) {
                const int token = q0 + t0 + r / group, head = kv_head * group + r % group;
                x = to_float(q[(static_cast<long long>(token) * num_q_heads + head) * D + d]) * scale_log2;
            }
            Qs[i] = x;
        }
        // This warp's rows: validity and bitmask row are warp-uniform per row.
        bool valid[RPW];
        const int* mask_row[RPW];
        float m[RPW], l[RPW], o[RPW][DPL];
#pragma unroll
        for (int r = 0; r < RPW; ++r) {
            const int rr = base + warp * RPW + r;
            valid[r] = rr < num_rows;
            const int token = q0 + t0 + (valid[r] ? rr / group : 0);
            mask_row[r] = bitmask + static_cast<long long>(token) * words;
            m[r] = neg_inf();
            l[r] = 0.f;
#pragma unroll
            for (int i = 0; i < DPL; ++i) o[r][i] = 0.f;
        }

        for (int k0 = 0; k0 < num_keys; k0 += KT) {
            __syncthreads();  // the previous tile is no longer read
            for (int i = tid; i < KT * D; i += NTHREADS) {
                const int key = i / D, d = i % D, slot = k0 + key;
                // Slots past num_keys may hold anything (even NaN): zero them, p = 0 there.
                const bool in = slot < num_keys;
                Kt[d * KS + key] = in ? to_float(kb[slot * k_slot + d]) : 0.f;
                Vs[i] = in ? vb[slot * v_slot + d] : from_float<T>(0.f);
            }
            __syncthreads();

            // Scores: lane = key k0 + lane, for each of the warp's rows.
            float s[RPW];
#pragma unroll
            for (int r = 0; r < RPW; ++r) s[r] = 0.f;
#pragma unroll 4
            for (int d = 0; d < D; d += 4) {
                const float k_0 = Kt[d * KS + lane], k_1 = Kt[(d + 1) * KS + lane];
                const float k_2 = Kt[(d + 2) * KS + lane], k_3 = Kt[(d + 3) * KS + lane];
#pragma unroll
                for (int r = 0; r < RPW; ++r) {
                    const float4 qv = *reinterpret_cast<const float4*>(&Qs[(warp * RPW + r) * D + d]);
                    s[r] = fmaf(qv.x, k_0, fmaf(qv.y, k_1, fmaf(qv.z, k_2, fmaf(qv.w, k_3, s[r]))));
                }
            }
            const int key = k0 + lane;
            const bool tree_tile = k0 + KT > prefix;  // block-uniform: only these need the mask
#pragma unroll
            for (int r = 0; r < RPW; ++r) {
                if (!valid[r]) continue;  // warp-uniform
                bool visible = key < num_keys;
                if (tree_tile && visible && key >= prefix) {
                    const int j = key - prefix;  // j-th new token of this request
                    visible = (__ldg(mask_row[r] + (j >> 5)) >> (j & 31)) & 1;
                }
                const float sc = visible ? s[r] : neg_inf();
                const float m_new = fmaxf(m[r], warp_max(sc));
                // Nothing visible yet (m_new = -inf): keep the state, avoid inf - inf.
                const float corr = m_new == neg_inf() ? 1.f : exp2f(m[r] - m_new);
                const float p = visible ? exp2f(sc - m_new) : 0.f;
                m[r] = m_new;
                l[r] = l[r] * corr + p;  // per-lane partial sum, reduced once at the end
#pragma unroll
                for (int i = 0; i < DPL; ++i) o[r][i] *= corr;
                Ps[warp][r][lane] = p;
            }
            __syncwarp();
            // o += P V: each V element read once from shared memory serves the warp's rows.
#pragma unroll 2
            for (int j = 0; j < KT; j += 4) {
                float vv[4][DPL];
#pragma unroll
                for (int jj = 0; jj < 4; ++jj)
#pragma unroll
                    for (int i = 0; i < DPL; ++i) vv[jj][i] = to_float(Vs[(j + jj) * D + lane + 32 * i]);
#pragma unroll
                for (int r = 0; r < RPW; ++r) {
                    if (!valid[r]) continue;
                    const float4 p4 = *reinterpret_cast<const float4*>(&Ps[warp][r][j]);
#pragma unroll
                    for (int i = 0; i < DPL; ++i)
                        o[r][i] = fmaf(p4.x, vv[0][i], fmaf(p4.y, vv[1][i],
                                  fmaf(p4.z, vv[2][i], fmaf(p4.w, vv[3][i], o[r][i]))));
                }
            }
            __syncwarp();  // Ps is rewritten by the next tile
        }

#pragma unroll
        for (int r = 0; r < RPW; ++r) {
            const float total = warp_sum(l[r]);  // all lanes take part: no divergent shuffles
            if (!valid[r]) continue;
            const int rr = base + warp * RPW + r;
            const int token = q0 + t0 + rr / group, head = kv_head * group + rr % group;
            T* dst = out + (static_cast<long long>(token) * num_q_heads + head) * D;
            const float inv = total > 0.f ? 1.f / total : 0.f;
#pragma unroll
            for (int i = 0; i < DPL; ++i) dst[lane + 32 * i] = from_float<T>(o[r][i] * inv);
        }
    }
}

#define TREE_ATTN_KERNEL(NAME, T, D)                                                              \
    extern "C" __global__ void __launch_bounds__(NTHREADS) NAME(                                  \
        const T* q, const T* k, const T* v, T* out, const int* query_starts,                      \
        const int* prefix_lens, const int* request_rows, const int* bitmask, int words,           \
        int num_q_heads, int num_kv_heads, int qtile, long long k_row, long long k_head,          \
        long long k_slot, long long v_row, long long v_head, long long v_slot, float scale_log2) { \
        tree_attn<T, D>(q, k, v, out, query_starts, prefix_lens, request_rows, bitmask, words,    \
                        num_q_heads, num_kv_heads, qtile, k_row, k_head, k_slot, v_row, v_head,    \
                        v_slot, scale_log2);                                                       \
    }

TREE_ATTN_KERNEL(tree_attn_f16_d64, f16, 64)
TREE_ATTN_KERNEL(tree_attn_f16_d128, f16, 128)
TREE_ATTN_KERNEL(tree_attn_bf16_d64, bf16, 64)
TREE_ATTN_KERNEL(tree_attn_bf16_d128, bf16, 128)
TREE_ATTN_KERNEL(tree_attn_f32_d64, float, 64)
TREE_ATTN_KERNEL(tree_attn_f32_d128, float, 128)
