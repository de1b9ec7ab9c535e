// Small C helpers for codecs whose error handling needs setjmp (libpng), kept out of Swift.
#ifndef CLIPKIT_CCODECS_H
#define CLIPKIT_CCODECS_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Decodes a PNG into 8-bit RGB the way Pillow's Image.open(...).convert("RGB") does: palette
// expanded, alpha dropped, 16-bit samples reduced to their high byte, except 16-bit grayscale,
// which Pillow clips to 255. Returns 0 and a malloc'd buffer (free with ck_codec_free), or -1 with
// a message in `err`. Images over `max_pixels` are refused before decoding.
int ck_png_decode_rgb(const uint8_t *data, size_t size, uint64_t max_pixels, uint8_t **out_rgb,
                      uint32_t *width, uint32_t *height, char *err, size_t errlen);
void ck_codec_free(void *p);

#ifdef __cplusplus
}
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif
// Writes 8-bit RGB pixels as a PNG file. Returns 0, or -1 with a message in err.
int ck_png_write_rgb(const char *path, const uint8_t *rgb, uint32_t width, uint32_t height, char *err, size_t errlen);
#ifdef __cplusplus
}
#endif
