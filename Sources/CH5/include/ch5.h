// HDF5 embedding files in the layout TAO's CLIP inference writes (h5py-compatible), through the
// HDF5 C library. Kept in C because HDF5's type constants are macros Swift cannot import.
#ifndef CLIPKIT_CH5_H
#define CLIPKIT_CH5_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

// Writes `path` with dataset "embeddings" (n x d float32, gzip level 4, chunked), dataset
// `labels_name` (n variable-length UTF-8 strings) and attributes `count_attr` = n,
// "embedding_dim" = d (int64), "embedding_type" = `type_value` (UTF-8 string).
// Returns 0, or -1 with a message in err.
int ck_h5_write_embeddings(const char *path, const float *emb, uint64_t n, uint64_t d, const char *labels_name,
                           const char *const *labels, const char *count_attr, const char *type_value, char *err,
                           size_t errlen);

// Reads such a file back (for tests and for tools): fills *n, *d, a malloc'd n*d float buffer,
// and a malloc'd array of n malloc'd strings. Free with ck_h5_free_read.
int ck_h5_read_embeddings(const char *path, const char *labels_name, const char *count_attr, uint64_t *n, uint64_t *d,
                          float **emb, char ***labels, int64_t *count_value, char *type_value, size_t type_len,
                          char *err, size_t errlen);
void ck_h5_free_read(float *emb, char **labels, uint64_t n);

// Row-wise reading of an embedding file too large to read whole: `embeddings` (any floating-point
// type, converted to float32) and its labels dataset `labels_name` (variable-length strings).
typedef struct ck_h5_reader ck_h5_reader;
// NULL with a message in err when the file or its datasets are missing or malformed.
ck_h5_reader *ck_h5_reader_open(const char *path, const char *labels_name, uint64_t *n, uint64_t *d, char *err,
                                size_t errlen);
// Whether the dataset stores IEEE half floats (which ck_h5_reader_rows can return unconverted).
int ck_h5_reader_is_half(ck_h5_reader *r);
// Rows [start, start + count) into out: count x d floats, or little-endian halves when as_half and
// the dataset stores halves.
int ck_h5_reader_rows(ck_h5_reader *r, uint64_t start, uint64_t count, uint64_t d, void *out, int as_half, char *err,
                      size_t errlen);
// The labels of `rows` (any order) as malloc'd strings into out[count]; the caller frees each.
int ck_h5_reader_labels(ck_h5_reader *r, const uint64_t *rows, uint64_t count, char **out, char *err, size_t errlen);
void ck_h5_reader_close(ck_h5_reader *r);

// HDF5 objects (files, datasets, attributes, groups, named types) still open in any file: 0 when
// every call above closed what it opened.
long ck_h5_open_objects(void);

#ifdef __cplusplus
}
#endif
#endif
