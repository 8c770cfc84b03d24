/*
 * Adaptive average pooling of an RGB picture by summed areas, in WebAssembly SIMD (built by
 * scripts/build-wasm.sh into summed-area.wasm, which is committed: installing facestream needs no
 * C compiler). The values are IntegralImage.poolPartInto's (src/image/integral.ts) bit for bit:
 * the same integer window sums, then the same double-precision sum * (row_k * col_inv) - m
 * rounded to float32 (built with -ffp-contract=off, so no fused multiply-add changes a bit).
 *
 * Without a table in memory. A summed-area table of a 1080p frame is 25 MB, far larger than the
 * cache; writing it and reading it back was most of the cost. A window's sum needs the table only
 * at the rows where windows begin and end, and is the same difference of any table that differs
 * from the picture's by a constant per row and per column. So a pass keeps one running table row
 * over the columns it covers (summed from its own first row and column; 4 lanes a column), adds one pixel row at a
 * time, and at the top row of a job's output row keeps the running row's sum across each of its
 * column windows; at its bottom row it pools the output row from them. The running row (23 KB at 1080p) and the
 * gathered values stay in the cache; the pixels are read once.
 *
 * Int32 lanes wrap (WebAssembly defines it), so the running sums may overflow: a window's sum is
 * an exact difference while the window holds fewer than 2^31 / 255 pixels (the caller keeps
 * larger windows on the JavaScript loop). 8-byte pixel loads reach 5 bytes past the last pixel: the
 * caller leaves that much slack.
 *
 * A pass: sweep_begin lays out every job's windows and the rectangle of the picture they cover,
 * then sweep_rows takes that rectangle's pixel rows top to bottom, in as many calls as the caller
 * likes (it copies them into this module's memory a band at a time).
 */
#include <stdint.h>
#include <wasm_simd128.h>

/*
 * A job, laid out by the caller (src/image/summed-area-wasm.ts): the src_w x src_h rectangle at
 * (x0, y0) (picture pixels; outside the picture is black) pooled to out_w x out_h, of which the
 * cells col..col+cols-1, row..row+rows-1 are written to `dst` as 3 planes of cols x rows. Output
 * index i averages [floor(i * in / out), ceil((i + 1) * in / out)) (integer division here, the
 * same integers as JavaScript's floor and ceil of the double quotient at these sizes), clamped to
 * the picture, with the factors of the unclamped sizes.
 */
typedef struct {
  int32_t x0, y0, src_w, src_h, out_w, out_h, col, row, cols, rows;
  int32_t *xs;      /* cols: first column of each column window, then its int32 offset in `sums` */
  int32_t *xe;      /* cols: one past its last column, likewise */
  int32_t *ya;      /* rows: first table row of each row window */
  int32_t *yb;      /* rows: one past its last row */
  double *col_inv;  /* cols: 1 / unclamped window width */
  double *row_k;    /* rows: scale / unclamped window height */
  float *dst;       /* 3 planes of cols * rows */
  v128_t *tops;     /* ring * cols: a begun row's running sums across each column window */
  int32_t ring;     /* rows begun and not yet written, at most (see summed-area-wasm.ts) */
  int32_t next_top, next_bottom;
} pool_job;

typedef struct {
  double m, scale;         /* values are sum * (row_k * col_inv) - m, m = mean * scale */
  int32_t x0, x1, y0, y1;  /* the pass covers table columns x0..x1, rows y0..y1 (sweep_begin) */
  int32_t y;               /* the table row `sums` holds */
  int32_t width, height;   /* the picture */
  int32_t count;
  int32_t started;         /* jobs of `order` begun: their first window's top row reached */
  int32_t active;          /* begun jobs with rows left to write, in `live` */
  int32_t *order;          /* count: job indices in the order of their first top row */
  int32_t *live;           /* count */
  int32_t *sums;           /* (x1 - x0 + 1) * 4 int32 (RGB and a zero lane per column): table row
                              y, from column x0 and row y0 */
  pool_job *jobs;
} sweep;

static inline int32_t clamp(int64_t v, int32_t hi) {
  return v < 0 ? 0 : v > hi ? hi : (int32_t)v;
}

/* Fills the window tables of `job` on a width x height picture. */
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

/* The running row's sum over the columns of window j (RGB lanes). */
static inline v128_t across(const pool_job *job, const int32_t *sums, int32_t j) {
  return wasm_i32x4_sub(wasm_v128_load(sums + job->xe[j]), wasm_v128_load(sums + job->xs[j]));
}

/* Output row i of `job` begins at the running row: keep its sums across each column window. */
static void gather_top(pool_job *job, int32_t i, const int32_t *sums) {
  v128_t *top = job->tops + (i % job->ring) * job->cols;
  for (int32_t j = 0; j < job->cols; j++) top[j] = across(job, sums, j);
}

/* The window sum of output column j (RGB lanes) of the row whose top sums are `top`. */
static inline v128_t window(const pool_job *job, const v128_t *top, const int32_t *sums, int32_t j) {
  return wasm_i32x4_sub(across(job, sums, j), top[j]);
}

/*
 * Output row i of `job` ends at the running row: its window sums, four columns at a time,
 * transposed from RGB lanes to one vector per channel and written to the three planes.
 */
static void write_row(const pool_job *job, int32_t i, const int32_t *sums, v128_t vm) {
  const int32_t cols = job->cols;
  const int32_t plane = cols * job->rows;
  const v128_t *top = job->tops + (i % job->ring) * cols;
  const double rk = job->row_k[i];
  const v128_t vrk = wasm_f64x2_splat(rk);
  float *out = job->dst + i * cols;
  int32_t j = 0;
  for (; j + 4 <= cols; j += 4) {
    const v128_t a0 = window(job, top, sums, j), a1 = window(job, top, sums, j + 1);
    const v128_t a2 = window(job, top, sums, j + 2), a3 = window(job, top, sums, j + 3);
    const v128_t rg01 = wasm_i32x4_shuffle(a0, a1, 0, 4, 1, 5);
    const v128_t rg23 = wasm_i32x4_shuffle(a2, a3, 0, 4, 1, 5);
    const v128_t b01 = wasm_i32x4_shuffle(a0, a1, 2, 6, 3, 7);
    const v128_t b23 = wasm_i32x4_shuffle(a2, a3, 2, 6, 3, 7);
    write4(out + j, wasm_i32x4_shuffle(rg01, rg23, 0, 1, 4, 5), job->col_inv + j, vrk, vm);
    write4(out + j + plane, wasm_i32x4_shuffle(rg01, rg23, 2, 3, 6, 7), job->col_inv + j, vrk, vm);
    write4(out + j + 2 * plane, wasm_i32x4_shuffle(b01, b23, 0, 1, 4, 5), job->col_inv + j, vrk, vm);
  }
  for (; j < cols; j++) {
    const v128_t sum = window(job, top, sums, j);
    const v128_t k = wasm_f64x2_splat(rk * job->col_inv[j]);
    const v128_t rg = wasm_f64x2_sub(wasm_f64x2_mul(wasm_f64x2_convert_low_i32x4(sum), k), vm);
    const v128_t bl = wasm_f64x2_sub(wasm_f64x2_mul(wasm_f64x2_convert_low_i32x4(wasm_i32x4_shuffle(sum, sum, 2, 3, 2, 3)), k), vm);
    out[j] = (float)wasm_f64x2_extract_lane(rg, 0);
    out[j + plane] = (float)wasm_f64x2_extract_lane(rg, 1);
    out[j + 2 * plane] = (float)wasm_f64x2_extract_lane(bl, 0);
  }
}

/*
 * Every window that begins or ends at the running row: jobs whose first window begins here join
 * `live`; each live job writes the rows whose window ends here (their tops were gathered at a row
 * above, or just now) and gathers the tops of the rows beginning here; finished jobs leave.
 */
static void reach_row(sweep *s) {
  const int32_t y = s->y;
  const v128_t vm = wasm_f64x2_splat(s->m);
  while (s->started < s->count && s->jobs[s->order[s->started]].ya[0] <= y) s->live[s->active++] = s->order[s->started++];
  int32_t kept = 0;
  for (int32_t k = 0; k < s->active; k++) {
    pool_job *job = s->jobs + s->live[k];
    for (;;) {
      if (job->next_bottom < job->next_top && job->yb[job->next_bottom] == y) write_row(job, job->next_bottom++, s->sums, vm);
      else if (job->next_top < job->rows && job->ya[job->next_top] == y) gather_top(job, job->next_top++, s->sums);
      else break;
    }
    if (job->next_bottom < job->rows) s->live[kept++] = s->live[k];
  }
  s->active = kept;
}

/*
 * Starts a pass over `count` jobs (each of at least one cell): fills their windows and sets the
 * rectangle they cover (x0..x1, y0..y1). The running row, which the caller zeroed, then holds
 * table row y0; windows that begin and end there (outside the picture) are written at once.
 */
__attribute__((export_name("sweep_begin")))
void sweep_begin(sweep *s) {
  s->x0 = s->width;
  s->y0 = s->height;
  s->x1 = 0;
  s->y1 = 0;
  for (int32_t n = 0; n < s->count; n++) {
    pool_job *job = s->jobs + n;
    windows(job, s->width, s->height, s->scale);
    job->next_top = 0;
    job->next_bottom = 0;
    if (job->xs[0] < s->x0) s->x0 = job->xs[0];
    if (job->xe[job->cols - 1] > s->x1) s->x1 = job->xe[job->cols - 1];
    if (job->ya[0] < s->y0) s->y0 = job->ya[0];
    if (job->yb[job->rows - 1] > s->y1) s->y1 = job->yb[job->rows - 1];
  }
  if (s->x1 < s->x0) s->x1 = s->x0;
  if (s->y1 < s->y0) s->y1 = s->y0;
  for (int32_t n = 0; n < s->count; n++) {
    pool_job *job = s->jobs + n;
    for (int32_t j = 0; j < job->cols; j++) {
      job->xs[j] = 4 * (job->xs[j] - s->x0);
      job->xe[j] = 4 * (job->xe[j] - s->x0);
    }
  }
  /* Insertion sort by first top row: crops come sorted by position, a pyramid's levels are few. */
  for (int32_t n = 0; n < s->count; n++) {
    int32_t k = n;
    while (k > 0 && s->jobs[s->order[k - 1]].ya[0] > s->jobs[n].ya[0]) {
      s->order[k] = s->order[k - 1];
      k--;
    }
    s->order[k] = n;
  }
  s->y = s->y0;
  s->started = 0;
  s->active = 0;
  reach_row(s);
}

/*
 * Adds the next `rows` pixel rows of the pass's rectangle (rows of (x1 - x0) * 3 bytes, from its
 * row y) to the running row, writing and gathering at each table row reached. One pixel per step:
 * its bytes widened to an i32x4 (the fourth lane masked off) join the row's running sums. A
 * column takes four lanes: with three, each store would overlap the next load, which then waits
 * for the store to land (about 5x slower).
 */
__attribute__((export_name("sweep_rows")))
void sweep_rows(sweep *s, const uint8_t *pixels, int32_t rows) {
  const int32_t width = s->x1 - s->x0;
  const v128_t rgb = wasm_i32x4_make(-1, -1, -1, 0);
  const uint8_t *src = pixels;
  for (int32_t r = 0; r < rows; r++) {
    v128_t run = wasm_i32x4_splat(0);
    int32_t *out = s->sums + 4;
    for (int32_t x = 0; x < width; x++, src += 3, out += 4) {
      const v128_t pixel = wasm_u32x4_extend_low_u16x8(wasm_u16x8_load8x8(src));
      run = wasm_i32x4_add(run, wasm_v128_and(pixel, rgb));
      wasm_v128_store(out, wasm_i32x4_add(wasm_v128_load(out), run));
    }
    s->y++;
    reach_row(s);
  }
}
