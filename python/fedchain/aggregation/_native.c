/* fedchain's native aggregation kernels: FedAvg's running mean in one pass over the rows, and Multi-Krum's Gram
 * matrix.
 *
 * Built on first use by fedchain/aggregation/_native.py (plain C11, no Python or torch headers) and called
 * through ctypes, which releases the GIL, so the caller's threads each run one span of D.
 *
 * Arithmetic, element by element, the same as torch's float32 lerp_ with a scalar weight (see rules.fedavg):
 *   out = x_0, then for each further row i:  diff = x_i - out                     (one rounding)
 *                                             out  = fmaf(coef_i, diff, base_i)   (one rounding)
 *   where base_i = out and coef_i = t_i when t_i < 0.5, else base_i = x_i and coef_i = t_i - 1.
 * fmaf rounds once by definition (C11 7.12.13.1): on FMA hardware it is one instruction, elsewhere libm computes
 * it exactly, so the bytes are the same on every CPU. Compile with -ffp-contract=off so that the compiler adds
 * no fusion of its own. Rows are processed a block of D at a time so that the block of out stays in L1 while
 * the K rows stream through once: memory traffic is K reads + 1 write of D floats.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define FEDCHAIN_AVX2 1
#endif

#define FEDCHAIN_BLOCK 2048 /* floats of out kept in L1 (8 KiB) */

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
/* One build for every x86-64 CPU: an AVX2+FMA clone chosen at load time, and a baseline one. */
#define FEDCHAIN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FEDCHAIN_CLONES
#endif

int fedchain_native_abi(void) { return 3; }

/* rows: k pointers to n floats each; coef, small: k entries (entry 0 unused); out: n floats. */
FEDCHAIN_CLONES
void fedchain_fedavg_lerp(const float *const *rows, const float *coef, const unsigned char *small, int k,
                          float *out, size_t n) {
    for (size_t start = 0; start < n; start += FEDCHAIN_BLOCK) {
        size_t m = n - start < FEDCHAIN_BLOCK ? n - start : FEDCHAIN_BLOCK;
        float *restrict o = out + start;
        memcpy(o, rows[0] + start, m * sizeof(float));
        for (int i = 1; i < k; i++) {
            const float *restrict x = rows[i] + start;
            const float c = coef[i];
            if (small[i]) {
                for (size_t j = 0; j < m; j++) o[j] = fmaf(c, x[j] - o[j], o[j]);
            } else {
                for (size_t j = 0; j < m; j++) o[j] = fmaf(c, x[j] - o[j], x[j]);
            }
        }
    }
}

/* Multi-Krum's Gram matrix: gram[i * k + j] += sum over the span of x_i * x_j in double, for i <= j.
 *
 * Products of floats are exact in double, so the only rounding is in the sums (and fused or separate multiply-add
 * agree). Each pair accumulates in FEDCHAIN_LANES fixed lanes (element index mod FEDCHAIN_LANES), summed at the
 * end in a fixed order. The caller certifies what it decides from this matrix with an error bound that holds for
 * any order (rules.fast_gram), so the order here is a matter of speed only. Per block of D the rows are widened
 * to double once, into a scratch that stays in cache, and pairs are formed four at a time (one row against four)
 * to load each value once per four products. Returns 0, or -1 if out of memory. */
#define FEDCHAIN_LANES 8
#define FEDCHAIN_GRAM_BLOCK 256

typedef double fedchain_v4d __attribute__((vector_size(32)));
typedef float fedchain_v4f __attribute__((vector_size(16)));
#define FEDCHAIN_VECS (FEDCHAIN_GRAM_BLOCK / 4) /* vectors of 4 doubles per row of a block */

FEDCHAIN_CLONES
int fedchain_gram(const float *const *rows, int k, size_t n, double *gram) {
    const size_t pairs = (size_t)k * (size_t)k;
    fedchain_v4d *acc = aligned_alloc(32, pairs * 2 * sizeof(fedchain_v4d)); /* 2 x 4 = 8 lanes per pair */
    fedchain_v4d *wide = aligned_alloc(32, (size_t)k * FEDCHAIN_VECS * sizeof(fedchain_v4d));
    if (acc == NULL || wide == NULL) {
        free(acc);
        free(wide);
        return -1;
    }
    memset(acc, 0, pairs * 2 * sizeof(fedchain_v4d));
    for (size_t start = 0; start < n; start += FEDCHAIN_GRAM_BLOCK) {
        size_t m = n - start < FEDCHAIN_GRAM_BLOCK ? n - start : FEDCHAIN_GRAM_BLOCK;
        size_t vecs = (m + FEDCHAIN_LANES - 1) / FEDCHAIN_LANES * 2; /* whole lanes, zero-padded */
        for (int i = 0; i < k; i++) {
            fedchain_v4d *w = wide + (size_t)i * FEDCHAIN_VECS;
            const float *x = rows[i] + start;
            for (size_t v = 0; v < vecs; v++) {
                fedchain_v4f f = {0.0f, 0.0f, 0.0f, 0.0f};
                if (4 * v + 4 <= m) {
                    memcpy(&f, x + 4 * v, sizeof f);
                } else {
                    for (size_t q = 0; 4 * v + q < m; q++) f[q] = x[4 * v + q];
                }
                w[v] = __builtin_convertvector(f, fedchain_v4d);
            }
        }
        for (int i = 0; i < k; i++) {
            const fedchain_v4d *a = wide + (size_t)i * FEDCHAIN_VECS;
            int j = i;
            for (; j + 4 <= k; j += 4) {
                const fedchain_v4d *b0 = wide + (size_t)j * FEDCHAIN_VECS, *b1 = b0 + FEDCHAIN_VECS,
                                   *b2 = b1 + FEDCHAIN_VECS, *b3 = b2 + FEDCHAIN_VECS;
                fedchain_v4d *p = acc + ((size_t)i * k + j) * 2;
                fedchain_v4d s00 = p[0], s01 = p[1], s10 = p[2], s11 = p[3];
                fedchain_v4d s20 = p[4], s21 = p[5], s30 = p[6], s31 = p[7];
                for (size_t v = 0; v < vecs; v += 2) {
                    fedchain_v4d a0 = a[v], a1 = a[v + 1];
                    s00 += a0 * b0[v], s01 += a1 * b0[v + 1];
                    s10 += a0 * b1[v], s11 += a1 * b1[v + 1];
                    s20 += a0 * b2[v], s21 += a1 * b2[v + 1];
                    s30 += a0 * b3[v], s31 += a1 * b3[v + 1];
                }
                p[0] = s00, p[1] = s01, p[2] = s10, p[3] = s11, p[4] = s20, p[5] = s21, p[6] = s30, p[7] = s31;
            }
            for (; j < k; j++) {
                const fedchain_v4d *b = wide + (size_t)j * FEDCHAIN_VECS;
                fedchain_v4d *p = acc + ((size_t)i * k + j) * 2;
                fedchain_v4d s0 = p[0], s1 = p[1];
                for (size_t v = 0; v < vecs; v += 2) s0 += a[v] * b[v], s1 += a[v + 1] * b[v + 1];
                p[0] = s0, p[1] = s1;
            }
        }
    }
    for (int i = 0; i < k; i++)
        for (int j = i; j < k; j++) {
            const fedchain_v4d *p = acc + ((size_t)i * k + j) * 2;
            double total = 0.0;
            for (int q = 0; q < 4; q++) total += p[0][q];
            for (int q = 0; q < 4; q++) total += p[1][q];
            gram[(size_t)i * k + j] += total;
        }
    free(acc);
    free(wide);
    return 0;
}

/* Coordinate median and trimmed mean: per column, the mean of ranks lo..hi of the k values, computed exactly as
 * rules._mean_of_ranks computes it after the torch sorting network (rules.coordinate_median, rules._trimmed_mean):
 *   hi == lo:      out = r_lo + 0.0f
 *   hi == lo + 1:  out = fmaf(r_hi, 0.5f, r_lo * 0.5f) + 0.0f     (torch's add_ with alpha is fused; see rules)
 *   otherwise:     out = (float)(((double)r_lo + (double)r_lo+1 + ... + (double)r_hi) / (hi - lo + 1)) + 0.0f
 * (the + 0.0f turns -0.0 into +0.0). Columns are taken a block of FEDCHAIN_RANK_COLS at a time: the block's k
 * rows are read once from memory into a scratch that stays in L1, sorted there column-wise, and averaged.
 *
 * Which sorting network: the caller's `steps` are the torch path's (Batcher's odd-even merge sort, pruned to the
 * steps that reach ranks lo..hi). Ranks of values without NaN are the same however they are sorted, so a block
 * without NaN may be sorted faster: with AVX2 each aligned group of 16 rows is sorted in registers as it is read
 * (Batcher's network for 16, which is what the caller's network does first), then only the caller's `late`
 * steps run (rules: _sortnet.pruned_after_groups). A block with a NaN is sorted by `steps` with NaN-propagating
 * min and max, as torch.minimum and torch.maximum propagate it, so that the same ranks come out NaN.
 *
 * With `outside` (k counters), each row's coordinates strictly below r_lo or above r_hi are counted (the trimmed
 * mean's discards). Returns 0, or -1 if out of memory. */
#define FEDCHAIN_RANK_COLS 64

/* Compare-exchange of two rows of a block: the minimum into a, the maximum into b (x < y ? x : y is exactly a
 * vector min instruction's rule; -fno-trapping-math lets the compiler use it). For columns without NaN. */
static inline void fedchain_cmpx(float *restrict a, float *restrict b) {
    for (int c = 0; c < FEDCHAIN_RANK_COLS; c++) {
        float x = a[c], y = b[c];
        a[c] = x < y ? x : y;
        b[c] = x > y ? x : y;
    }
}

/* The same, as torch.minimum and torch.maximum: NaN where either value is NaN. */
static inline void fedchain_cmpx_nan(float *restrict a, float *restrict b) {
    for (int c = 0; c < FEDCHAIN_RANK_COLS; c++) {
        float x = a[c], y = b[c], s = x + y; /* NaN whenever either is */
        int nan = (x != x) | (y != y);
        a[c] = nan ? s : (x < y ? x : y);
        b[c] = nan ? s : (x < y ? y : x);
    }
}

/* Copy a block (m <= FEDCHAIN_RANK_COLS columns from `start`) into work, padding with zeros; 1 if it has a NaN. */
static int fedchain_load_block(const float *const *rows, int k, size_t start, size_t m, float *work) {
    typedef int v8i __attribute__((vector_size(32)));
    typedef float v8f __attribute__((vector_size(32)));
    v8i nan = {0};
    for (int i = 0; i < k; i++) {
        float *w = work + (size_t)i * FEDCHAIN_RANK_COLS;
        memcpy(w, rows[i] + start, m * sizeof(float));
        for (size_t c = m; c < FEDCHAIN_RANK_COLS; c++) w[c] = 0.0f;
        for (int c = 0; c < FEDCHAIN_RANK_COLS; c += 8) {
            v8f x;
            memcpy(&x, w + c, sizeof x);
            nan |= x != x;
        }
    }
    int any = 0;
    for (int q = 0; q < 8; q++) any |= nan[q];
    return any != 0;
}

#ifdef FEDCHAIN_AVX2
/* Batcher's odd-even merge sort of 16 (its steps past row m - 1 are skipped: Batcher's network for m). */
static const unsigned char fedchain_sort16[63][2] = {
    {0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}, {0, 2}, {1, 3}, {4, 6}, {5, 7}, {8, 10},
    {9, 11}, {12, 14}, {13, 15}, {1, 2}, {5, 6}, {9, 10}, {13, 14}, {0, 4}, {1, 5}, {2, 6}, {3, 7}, {8, 12}, {9, 13},
    {10, 14}, {11, 15}, {2, 4}, {3, 5}, {10, 12}, {11, 13}, {1, 2}, {3, 4}, {5, 6}, {9, 10}, {11, 12}, {13, 14},
    {0, 8}, {1, 9}, {2, 10}, {3, 11}, {4, 12}, {5, 13}, {6, 14}, {7, 15}, {4, 8}, {5, 9}, {6, 10}, {7, 11}, {2, 4},
    {3, 5}, {6, 8}, {7, 9}, {10, 12}, {11, 13}, {1, 2}, {3, 4}, {5, 6}, {7, 8}, {9, 10}, {11, 12}, {13, 14}};

/* Read a full block from the rows into work with each aligned group of 16 rows sorted column-wise, 8 columns at a
 * time in registers. Returns 0, or 1 if the block has a NaN (work is then not sorted: the caller starts over). */
__attribute__((target("avx2"))) static int fedchain_load_sorted_avx2(const float *const *rows, int k, size_t start,
                                                                     float *work) {
    __m256 nan = _mm256_setzero_ps();
    for (int g = 0; g < k; g += 16) {
        const int m = k - g < 16 ? k - g : 16;
        float *base = work + (size_t)g * FEDCHAIN_RANK_COLS;
        for (int c = 0; c < FEDCHAIN_RANK_COLS; c += 8) {
            __m256 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                if (i < m) {
                    r[i] = _mm256_loadu_ps(rows[g + i] + start + c);
                    nan = _mm256_or_ps(nan, _mm256_cmp_ps(r[i], r[i], _CMP_UNORD_Q));
                }
            }
#pragma GCC unroll 63
            for (int s = 0; s < 63; s++) {
                const int a = fedchain_sort16[s][0], b = fedchain_sort16[s][1];
                if (b < m) {
                    __m256 x = r[a], y = r[b];
                    r[a] = _mm256_min_ps(x, y);
                    r[b] = _mm256_max_ps(x, y);
                }
            }
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                if (i < m) _mm256_store_ps(base + (size_t)i * FEDCHAIN_RANK_COLS + c, r[i]);
        }
    }
    return _mm256_movemask_ps(nan) != 0;
}
#endif

FEDCHAIN_CLONES
int fedchain_rank_mean(const float *const *rows, int k, size_t n, const int *steps, int nsteps, const int *late,
                       int nlate, int lo, int hi, float *out, long long *outside) {
    const size_t W = FEDCHAIN_RANK_COLS;
    float *work = aligned_alloc(64, (size_t)k * W * sizeof(float));
    double *acc = aligned_alloc(64, W * sizeof(double));
    if (work == NULL || acc == NULL) {
        free(work);
        free(acc);
        return -1;
    }
#ifdef FEDCHAIN_AVX2
    const int grouped = late != NULL && __builtin_cpu_supports("avx2");
#endif
    const int count = hi - lo + 1;
    for (size_t start = 0; start < n; start += W) {
        const size_t m = n - start < W ? n - start : W;
        int sorted = 0;
#ifdef FEDCHAIN_AVX2
        if (grouped && m == W && !fedchain_load_sorted_avx2(rows, k, start, work)) {
            for (int s = 0; s < nlate; s++)
                fedchain_cmpx(work + (size_t)late[2 * s] * W, work + (size_t)late[2 * s + 1] * W);
            sorted = 1;
        }
#endif
        if (!sorted) {
            if (fedchain_load_block(rows, k, start, m, work)) {
                for (int s = 0; s < nsteps; s++)
                    fedchain_cmpx_nan(work + (size_t)steps[2 * s] * W, work + (size_t)steps[2 * s + 1] * W);
            } else {
                for (int s = 0; s < nsteps; s++)
                    fedchain_cmpx(work + (size_t)steps[2 * s] * W, work + (size_t)steps[2 * s + 1] * W);
            }
        }
        const float *rlo = work + (size_t)lo * W, *rhi = work + (size_t)hi * W;
        float res[FEDCHAIN_RANK_COLS];
        if (count == 1) {
            for (size_t c = 0; c < W; c++) res[c] = rlo[c] + 0.0f;
        } else if (count == 2) {
            for (size_t c = 0; c < W; c++) res[c] = fmaf(rhi[c], 0.5f, rlo[c] * 0.5f) + 0.0f;
        } else {
            for (size_t c = 0; c < W; c++) acc[c] = (double)rlo[c];
            for (int r = lo + 1; r <= hi; r++) {
                const float *x = work + (size_t)r * W;
                for (size_t c = 0; c < W; c++) acc[c] += (double)x[c];
            }
            for (size_t c = 0; c < W; c++) res[c] = (float)(acc[c] / (double)count) + 0.0f;
        }
        memcpy(out + start, res, m * sizeof(float));
        if (outside) {
            for (int i = 0; i < k; i++) {
                const float *x = rows[i] + start; /* just read: still in cache */
                long long t = 0;
                for (size_t c = 0; c < m; c++) t += (x[c] < rlo[c]) + (x[c] > rhi[c]);
                outside[i] += t;
            }
        }
    }
    free(work);
    free(acc);
    return 0;
}
