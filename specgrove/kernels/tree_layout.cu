// Tree layout of a packed verification batch: positions, KV slots, cache rows and the
// bit-packed ancestor mask of every query token, one thread per token.
//
// Layout (see tree_layout.py): request r owns tokens query_starts[r] .. query_starts[r+1]-1;
// the first token of a slice is the request's root (parent -1) and token i > 0 of a slice has
// its parent at a local index p < i of the same slice. Word w of a token's mask row holds the
// bits of local tokens 32w .. 32w+31, least significant bit first.

// The request of token t: the last r with query_starts[r] <= t. Every slice is non-empty, so
// query_starts is strictly increasing and that r is unique. B is small (a batch), a binary
// search over it costs a handful of cached loads.
__device__ __forceinline__ int request_of(const int* __restrict__ query_starts, int num_requests,
                                          int t)
{
    int lo = 0;
    int hi = num_requests - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (query_starts[mid] <= t) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return lo;
}

extern "C" __global__ void tree_layout(const int* __restrict__ parents,
                                       const int* __restrict__ query_starts,
                                       const int* __restrict__ prefix_lens,
                                       const int* __restrict__ rows,
                                       int num_requests,
                                       int num_tokens,
                                       int num_words,
                                       long long* __restrict__ positions,
                                       long long* __restrict__ slots,
                                       long long* __restrict__ token_rows,
                                       unsigned int* __restrict__ bitmask)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= num_tokens) {
        return;
    }
    const int r = request_of(query_starts, num_requests, t);
    const int start = query_starts[r];
    const int local = t - start;

    // This thread owns its whole mask row: no other thread writes it, so no atomics.
    unsigned int* const row = bitmask + static_cast<long long>(t) * num_words;
    for (int w = 0; w < num_words; ++w) {
        row[w] = 0u;
    }

    // Walk from the token up to the root, setting one bit per node on the path (itself and
    // every ancestor, the root included). Parents come before children, so the local indices
    // visited strictly decrease and so do their word indices: each word is finished as soon as
    // the walk leaves it, and is stored once from a register instead of OR-ed in memory.
    int node = local;
    int word = node >> 5;
    unsigned int bits = 0u;
    int depth = 0;
    for (;;) {
        const int w = node >> 5;
        if (w != word) {
            if (word < num_words) {  // a max_len below the true one drops bits, never overflows
                row[word] = bits;
            }
            bits = 0u;
            word = w;
        }
        bits |= 1u << (node & 31);
        const int parent = parents[start + node];
        // The root's parent is -1. A parent that does not precede its child is malformed input
        // (the torch reference rejects it); stopping there keeps the walk finite and in range.
        if (parent < 0 || parent >= node) {
            break;
        }
        node = parent;
        ++depth;  // one edge nearer the root: depth is the number of edges walked
    }
    if (word < num_words) {
        row[word] = bits;
    }

    // A token's position is its depth past the prefix (siblings share one); its K/V goes to the
    // slot right after the prefix in slice order, so that slots are distinct within the row.
    const long long prefix = prefix_lens[r];
    positions[t] = prefix + depth;
    slots[t] = prefix + local;
    token_rows[t] = rows[r];
}
