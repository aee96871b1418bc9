// KV compaction: for every move i, copy slot src[i] of cache row row[i] to slot dst[i], in all
// layers and KV heads, of K and of V, in ONE launch, with gather-before-scatter semantics (all
// sources are read before any destination is written), as torch's `k[:, r, :, d] = k[:, r, :, s]`.
//
// Cache layout (kv.py): (layers, rows, kv_heads, max_len, head_dim), contiguous. The kernel copies
// raw bits: a slot vector is `words_per_slot` 32-bit (or 16-bit) words, whatever the dtype.
//
// Why this is race-free without a grid-wide sync: a move reads and writes only its own row, so
// moves of different rows never alias. The wrapper sorts the moves by row (on device) and each
// block owns one (row, layer, head, K-or-V) tile: it loads every source vector of its row into
// shared memory, waits at __syncthreads(), and only then writes the destinations. No other block
// touches that tile, so "all reads before any write" holds for the whole launch.
//
// Grid: blockIdx.x = group + num_groups * (head + heads * (layer + layers * which)), which = 0 for
// K, 1 for V. Group g is the g-th cache row that has moves (group_rows[g]); the host sizes
// num_groups as min(moves, rows) without knowing the true count, so blocks of rows with no moves
// exit at once.

template <typename Word>
__device__ __forceinline__ void compact_tile(Word* __restrict__ k, Word* __restrict__ v,
                                             const long long* __restrict__ group_rows,
                                             const long long* __restrict__ row_starts,
                                             const long long* __restrict__ order,
                                             const long long* __restrict__ src,
                                             const long long* __restrict__ dst,
                                             int num_groups, int num_layers, int num_rows,
                                             int num_heads, int max_len, int words_per_slot,
                                             int capacity)
{
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    Word* const staged = reinterpret_cast<Word*>(shared_bytes);

    long long b = blockIdx.x;
    const int group = static_cast<int>(b % num_groups);
    b /= num_groups;
    const int head = static_cast<int>(b % num_heads);
    b /= num_heads;
    const int layer = static_cast<int>(b % num_layers);
    const int which = static_cast<int>(b / num_layers);

    const long long row = group_rows[group];
    const long long begin = row_starts[row];
    const int count = static_cast<int>(row_starts[row + 1] - begin);
    // A row with more moves than the shared buffer holds cannot be staged whole, and a partial
    // copy would break gather-before-scatter: leave it untouched (the wrapper's debug check says
    // so). `count` is the same for the whole block, so no thread is left at the barrier below.
    if (count == 0 || count > capacity) {
        return;
    }

    Word* const cache = which == 0 ? k : v;
    // The (layer, row, head) tile is max_len slots of words_per_slot words each.
    Word* const tile = cache + ((static_cast<long long>(layer) * num_rows + row) * num_heads + head)
                                   * max_len * words_per_slot;
    const int total = count * words_per_slot;

    // Gather: consecutive threads read consecutive words of one slot vector (coalesced).
    for (int i = threadIdx.x; i < total; i += blockDim.x) {
        const int m = i / words_per_slot;
        const long long s = src[order[begin + m]];
        // An out-of-range slot is a caller bug (debug checks it); never read outside the tile.
        const bool in_range = s >= 0 && s < max_len;
        staged[i] = in_range ? tile[s * words_per_slot + i % words_per_slot] : Word(0);
    }
    __syncthreads();  // every source of this tile is now staged: writes cannot clobber a read
    // Scatter.
    for (int i = threadIdx.x; i < total; i += blockDim.x) {
        const int m = i / words_per_slot;
        const long long d = dst[order[begin + m]];
        if (d >= 0 && d < max_len) {
            tile[d * words_per_slot + i % words_per_slot] = staged[i];
        }
    }
}

// 32-bit words: fp32 slots, and fp16/bf16 slots of an even head_dim (the usual case).
extern "C" __global__ void kv_compact_32(unsigned int* k, unsigned int* v,
                                         const long long* group_rows, const long long* row_starts,
                                         const long long* order, const long long* src,
                                         const long long* dst, int num_groups, int num_layers,
                                         int num_rows, int num_heads, int max_len,
                                         int words_per_slot, int capacity)
{
    compact_tile<unsigned int>(k, v, group_rows, row_starts, order, src, dst, num_groups,
                               num_layers, num_rows, num_heads, max_len, words_per_slot, capacity);
}

// 16-bit words: fp16/bf16 slots of an odd head_dim.
extern "C" __global__ void kv_compact_16(unsigned short* k, unsigned short* v,
                                         const long long* group_rows, const long long* row_starts,
                                         const long long* order, const long long* src,
                                         const long long* dst, int num_groups, int num_layers,
                                         int num_rows, int num_heads, int max_len,
                                         int words_per_slot, int capacity)
{
    compact_tile<unsigned short>(k, v, group_rows, row_starts, order, src, dst, num_groups,
                                 num_layers, num_rows, num_heads, max_len, words_per_slot,
                                 capacity);
}
