/*
 * The summed-area table of an RGB picture, and adaptive average pooling from it, in WebAssembly
 * SIMD (built by scripts/build-wasm.sh into summed-area.wasm, which is committed: installing
 * facestream needs no C compiler). Same layout and values as the JavaScript loops in
 * src/image/integral.ts: (h + 1) rows of (w + 1) * 3 int32 sums, interleaved RGB, row 0 and
 * column 0 zero; pooled values bit for bit as IntegralImage.poolPartInto computes them.
 *
 * The table:
 * The caller copies the picture in bands of rows (a small staging area, not a second copy of the
 * picture) and sums each band onto the rows above it. One pixel per step: its three bytes widened
 * to an i32x4 (the fourth lane masked off) join the row's running sums, and the row above is added
 * as one vector. The vector stores write one lane past each pixel (the next pixel overwrites it),
 * so the caller leaves 16 bytes of slack after the table, and after the pixels for the 8-byte
 * loads.
 */
#include <stdint.h>
#include <wasm_simd128.h>

__attribute__((export_name("summed_area_rows")))
void summed_area_rows(const uint8_t *pixels, int32_t width, int32_t rows, int32_t *row) {
  /* `row` is the table row of the first pixel row; the row above it is complete (row 0: zeros). */
  const int32_t stride = (width + 1) * 3;
  const v128_t rgb = wasm_i32x4_make(-1, -1, -1, 0);
  const uint8_t *src = pixels;
  for (int32_t y = 0; y < rows; y++, row += stride) {
    row[0] = 0;
    row[1] = 0;
    row[2] = 0;
    v128_t run = wasm_i32x4_splat(0);
    int32_t *out = row + 3;
    for (int32_t x = 0; x < width; x++, src += 3, out += 3) {
      const v128_t pixel = wasm_u32x4_extend_low_u16x8(wasm_u16x8_load8x8(src));
      run = wasm_i32x4_add(run, wasm_v128_and(pixel, rgb));
      wasm_v128_store(out, wasm_i32x4_add(wasm_v128_load(out - stride), run));
    }
  }
}

/*
 * Pooling. A job, laid out by the caller (src/image/summed-area-wasm.ts): the src_w x src_h
 * rectangle at (x0, y0) (table pixels; outside the table is black) pooled to out_w x out_h, of
 * which the cells col..col+cols-1, row..row+rows-1 are written to `dst` as 3 planes of cols x rows.
 * `windows` lays out each cell's window as IntegralImage.poolPartInto does: output index i
 * averages [floor(i * in / out), ceil((i + 1) * in / out)) (integer division here, the same
 * integers as JavaScript's floor and ceil of the double quotient at these sizes), clamped to the
 * table, with the factors of the unclamped sizes; the values are float32 of the double
 * sum * (row_k * col_inv) - m.
 */
typedef struct {
  int32_t x0, y0, src_w, src_h, out_w, out_h, col, row, cols, rows;
  int32_t *xs;      /* cols: first column of each column window (filled by `windows`) */
  int32_t *xe;      /* cols: one past its last column */
  int32_t *ya;      /* rows: first row of each row window */
  int32_t *yb;      /* rows: one past its last row */
  double *col_inv;  /* cols: 1 / unclamped window width */
  double *row_k;    /* rows: scale / unclamped window height */
  float *dst;       /* 3 planes of cols * rows */
} pool_job;

static inline int32_t clamp(int64_t v, int32_t hi) {
  return v < 0 ? 0 : v > hi ? hi : (int32_t)v;
}

/* Fills the window tables of `job` on a width x height table. */
static void windows(pool_job *job, int32_t width, int32_t height, double scale) {
  for (int32_t j = 0; j < job->cols; j++) {
    const int64_t p = (int64_t)(job->col + j) * job->src_w;
    const int64_t a = job->x0 + p / job->out_w;
    const int64_t b = job->x0 + (p + job->src_w + job->out_w - 1) / job->out_w;
    job->col_inv[j] = 1.0 / (double)(b - a);
    job->xs[j] = clamp(a, width);
    job->xe[j] = clamp(b, width);
  }
  for (int32_t i = 0; i < job->rows; i++) {
    const int64_t p = (int64_t)(job->row + i) * job->src_h;
    const int64_t a = job->y0 + p / job->out_h;
    const int64_t b = job->y0 + (p + job->src_h + job->out_h - 1) / job->out_h;
    job->row_k[i] = scale / (double)(b - a);
    job->ya[i] = clamp(a, height);
    job->yb[i] = clamp(b, height);
  }
}

/* dst[0..3] = float32(sums * (rk * col_inv[0..3]) - m), from the int32 sums of four columns. */
static inline void write4(float *dst, v128_t sums, const double *col_inv, v128_t rk, v128_t m) {
  const v128_t lo = wasm_f64x2_sub(wasm_f64x2_mul(wasm_f64x2_convert_low_i32x4(sums), wasm_f64x2_mul(rk, wasm_v128_load(col_inv))), m);
  const v128_t hi = wasm_f64x2_sub(wasm_f64x2_mul(wasm_f64x2_convert_low_i32x4(wasm_i32x4_shuffle(sums, sums, 2, 3, 2, 3)), wasm_f64x2_mul(rk, wasm_v128_load(col_inv + 2))), m);
  wasm_v128_store(dst, wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(lo), wasm_f32x4_demote_f64x2_zero(hi), 0, 1, 4, 5));
}

/* The window sum of output column j of a row (RGB lanes), from table rows a (top) and b (bottom). */
static inline v128_t window(const pool_job *job, const int32_t *a, const int32_t *b, int32_t j) {
  const int32_t p = 3 * job->xs[j];
  const int32_t q = 3 * job->xe[j];
  return wasm_i32x4_add(wasm_i32x4_sub(wasm_v128_load(b + q), wasm_v128_load(a + q)), wasm_i32x4_sub(wasm_v128_load(a + p), wasm_v128_load(b + p)));
}

/* Writes output row i of `job` from the table rows of its window. */
static void pool_row(const pool_job *job, int32_t i, const int32_t *table, int32_t stride, v128_t vm, double m) {
  const int32_t cols = job->cols;
  const int32_t plane = cols * job->rows;
  const int32_t *a = table + job->ya[i] * stride;
  const int32_t *b = table + job->yb[i] * stride;
  const double rk = job->row_k[i];
  const v128_t vrk = wasm_f64x2_splat(rk);
  float *out = job->dst + i * cols;
  int32_t j = 0;
  for (; j + 4 <= cols; j += 4) {
    const v128_t a0 = window(job, a, b, j), a1 = window(job, a, b, j + 1), a2 = window(job, a, b, j + 2), a3 = window(job, a, b, j + 3);
    const v128_t rg01 = wasm_i32x4_shuffle(a0, a1, 0, 4, 1, 5);
    const v128_t rg23 = wasm_i32x4_shuffle(a2, a3, 0, 4, 1, 5);
    const v128_t b01 = wasm_i32x4_shuffle(a0, a1, 2, 6, 3, 7);
    const v128_t b23 = wasm_i32x4_shuffle(a2, a3, 2, 6, 3, 7);
    write4(out + j, wasm_i32x4_shuffle(rg01, rg23, 0, 1, 4, 5), job->col_inv + j, vrk, vm);
    write4(out + j + plane, wasm_i32x4_shuffle(rg01, rg23, 2, 3, 6, 7), job->col_inv + j, vrk, vm);
    write4(out + j + 2 * plane, wasm_i32x4_shuffle(b01, b23, 0, 1, 4, 5), job->col_inv + j, vrk, vm);
  }
  for (; j < cols; j++) {
    const v128_t sum = window(job, a, b, j);
    const v128_t k = wasm_f64x2_splat(rk * job->col_inv[j]);
    const v128_t rg = wasm_f64x2_sub(wasm_f64x2_mul(wasm_f64x2_convert_low_i32x4(sum), k), vm);
    const v128_t bl = wasm_f64x2_sub(wasm_f64x2_mul(wasm_f64x2_convert_low_i32x4(wasm_i32x4_shuffle(sum, sum, 2, 3, 2, 3)), k), vm);
    out[j] = (float)wasm_f64x2_extract_lane(rg, 0);
    out[j + plane] = (float)wasm_f64x2_extract_lane(rg, 1);
    out[j + 2 * plane] = (float)wasm_f64x2_extract_lane(bl, 0);
  }
}

/*
 * Pools each of `count` jobs from the summed-area table of the width x height picture: four
 * vector reads per window whatever its size; four columns at a time, their sums transposed from
 * RGB lanes to one vector per channel and written to the three planes as float32x4.
 *
 * The table is far larger than the cache (25 MB at 1080p) and reading it is the cost. With
 * `sweep`, the jobs' output rows are interleaved in the order of their windows' bottom rows, so
 * the jobs go down the table together and a table row read for one job is still cached when the
 * others read it: the levels of a pyramid read the table about once instead of about twice each.
 * `next` holds each job's next output row (`count` int32, zero on entry). Without `sweep` (many
 * small jobs, such as crops the caller sorted by position) the jobs run one after the other.
 */
__attribute__((export_name("pool_from_table")))
void pool_from_table(const int32_t *table, int32_t width, int32_t height, pool_job *jobs, int32_t count, double mean, double scale, int32_t sweep, int32_t *next) {
  const int32_t stride = (width + 1) * 3;
  const double m = mean * scale;
  const v128_t vm = wasm_f64x2_splat(m);
  for (int32_t n = 0; n < count; n++) windows(jobs + n, width, height, scale);
  if (!sweep) {
    for (int32_t n = 0; n < count; n++) {
      for (int32_t i = 0; i < jobs[n].rows; i++) pool_row(jobs + n, i, table, stride, vm, m);
    }
    return;
  }
  for (;;) {
    int32_t best = -1;
    int32_t lowest = INT32_MAX;
    for (int32_t n = 0; n < count; n++) {
      if (next[n] < jobs[n].rows && jobs[n].yb[next[n]] < lowest) {
        lowest = jobs[n].yb[next[n]];
        best = n;
      }
    }
    if (best < 0) return;
    pool_row(jobs + best, next[best]++, table, stride, vm, m);
  }
}
