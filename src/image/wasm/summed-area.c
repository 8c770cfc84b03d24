/*
 * The summed-area table of an RGB picture, in WebAssembly SIMD (built by scripts/build-wasm.sh into
 * summed-area.wasm, which is committed: installing facestream needs no C compiler). Same layout
 * and values as the JavaScript loop in src/image/integral.ts: (h + 1) rows of (w + 1) * 3 int32
 * sums, interleaved RGB, row 0 and column 0 zero.
 *
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
