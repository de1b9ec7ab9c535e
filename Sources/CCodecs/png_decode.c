#include "ccodecs.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const uint8_t *data;
  size_t size, pos;
  char *err;
  size_t errlen;
} reader;

static void on_error(png_structp png, png_const_charp msg) {
  reader *r = (reader *)png_get_error_ptr(png);
  if (r && r->err) snprintf(r->err, r->errlen, "%s", msg);
  png_longjmp(png, 1);
}
static void on_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void on_read(png_structp png, png_bytep out, png_size_t n) {
  reader *r = (reader *)png_get_io_ptr(png);
  if (r->pos + n > r->size) png_error(png, "file is truncated");
  memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

void ck_codec_free(void *p) { free(p); }

int ck_png_decode_rgb(const uint8_t *data, size_t size, uint64_t max_pixels, uint8_t **out_rgb,
                      uint32_t *width, uint32_t *height, char *err, size_t errlen) {
  reader r = {data, size, 0, err, errlen};
  png_structp png = NULL;
  png_infop info = NULL;
  uint8_t *raw = NULL, *rgb = NULL;
  png_bytep *rows = NULL;
  *out_rgb = NULL;
  if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
    snprintf(err, errlen, "not a PNG file");
    return -1;
  }
  png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, on_error, on_warning);
  if (!png) { snprintf(err, errlen, "libpng could not start"); return -1; }
  info = png_create_info_struct(png);
  if (!info) { png_destroy_read_struct(&png, NULL, NULL); snprintf(err, errlen, "libpng could not start"); return -1; }
  // Volatile: modified between setjmp and a possible longjmp.
  volatile int gray16 = 0;
  if (setjmp(png_jmpbuf(png))) {
    free(raw);
    free(rgb);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return -1;
  }
  png_set_read_fn(png, &r, on_read);
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if ((uint64_t)w * (uint64_t)h > max_pixels) {
    snprintf(err, errlen, "image is %ux%u = %llu pixels, over the %llu-pixel limit (decompression bomb?)", w, h,
             (unsigned long long)w * h, (unsigned long long)max_pixels);
    png_longjmp(png, 1);
  }
  int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if ((color == PNG_COLOR_TYPE_GRAY) && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  gray16 = color == PNG_COLOR_TYPE_GRAY && depth == 16;
  if (depth == 16 && !gray16) png_set_strip_16(png);
  if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  size_t rowbytes = png_get_rowbytes(png, info);
  int channels = png_get_channels(png, info);
  raw = (uint8_t *)malloc(rowbytes * h);
  rows = (png_bytep *)malloc(sizeof(png_bytep) * h);
  rgb = (uint8_t *)malloc((size_t)w * h * 3);
  if (!raw || !rows || !rgb) { snprintf(err, errlen, "out of memory"); png_longjmp(png, 1); }
  for (png_uint_32 y = 0; y < h; y++) rows[y] = raw + y * rowbytes;
  png_read_image(png, rows);
  png_read_end(png, NULL);
  for (png_uint_32 y = 0; y < h; y++) {
    const uint8_t *in = rows[y];
    uint8_t *out = rgb + (size_t)y * w * 3;
    for (png_uint_32 x = 0; x < w; x++) {
      uint8_t v0, v1, v2;
      if (gray16) {
        unsigned v = ((unsigned)in[2 * x] << 8) | in[2 * x + 1];
        v0 = v1 = v2 = v > 255 ? 255 : (uint8_t)v;
      } else if (channels == 1) {
        v0 = v1 = v2 = in[x];
      } else if (channels == 2) {  // gray + alpha left by a transform
        v0 = v1 = v2 = in[2 * x];
      } else {
        v0 = in[channels * x]; v1 = in[channels * x + 1]; v2 = in[channels * x + 2];
      }
      out[3 * x] = v0; out[3 * x + 1] = v1; out[3 * x + 2] = v2;
    }
  }
  free(raw);
  free(rows);
  png_destroy_read_struct(&png, &info, NULL);
  *out_rgb = rgb;
  *width = w;
  *height = h;
  return 0;
}

int ck_png_write_rgb(const char *path, const uint8_t *rgb, uint32_t width, uint32_t height, char *err, size_t errlen) {
  reader r = {NULL, 0, 0, err, errlen};
  FILE *f = fopen(path, "wb");
  if (!f) { snprintf(err, errlen, "cannot create file"); return -1; }
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &r, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!png || !info) { fclose(f); snprintf(err, errlen, "libpng could not start"); return -1; }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    fclose(f);
    return -1;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (uint32_t y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * width * 3));
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  if (fclose(f) != 0) { snprintf(err, errlen, "cannot close file"); return -1; }
  return 0;
}
