#include "ch5.h"

#include <hdf5.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); goto done; } while (0)

// Debian's HDF5 is built without thread safety: two threads inside the library at once corrupt
// its ID tables (at exit: "infinite loop closing library"). Every entry point holds this lock.
static pthread_mutex_t h5_lock = PTHREAD_MUTEX_INITIALIZER;

static herr_t silent(hid_t stack, void *data) { (void)stack; (void)data; return 0; }

static int write_int_attr(hid_t obj, const char *name, int64_t v) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  int rc = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &v);
  if (a >= 0) H5Aclose(a);
  H5Sclose(space);
  return rc < 0 ? -1 : 0;
}

static hid_t vlen_utf8(void) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

static int write_embeddings(const char *path, const float *emb, uint64_t n, uint64_t d, const char *labels_name,
                           const char *const *labels, const char *count_attr, const char *type_value, char *err,
                           size_t errlen) {
  int rc = -1;
  hid_t file = -1, space = -1, plist = -1, ds = -1, str = -1, lspace = -1, lds = -1, aspace = -1, attr = -1;
  H5Eset_auto2(H5E_DEFAULT, silent, NULL);
  file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) FAIL("cannot create HDF5 file");
  hsize_t dims[2] = {n, d};
  space = H5Screate_simple(2, dims, NULL);
  plist = H5Pcreate(H5P_DATASET_CREATE);
  if (n > 0 && d > 0) {
    hsize_t chunk[2] = {n < 1024 ? n : 1024, d};
    H5Pset_chunk(plist, 2, chunk);
    H5Pset_deflate(plist, 4);
  }
  ds = H5Dcreate2(file, "embeddings", H5T_IEEE_F32LE, space, H5P_DEFAULT, plist, H5P_DEFAULT);
  if (ds < 0) FAIL("cannot create dataset 'embeddings'");
  if (n > 0 && d > 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, emb) < 0) FAIL("cannot write embeddings");
  str = vlen_utf8();
  hsize_t ldims[1] = {n};
  lspace = H5Screate_simple(1, ldims, NULL);
  lds = H5Dcreate2(file, labels_name, str, lspace, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (lds < 0) FAIL("cannot create dataset '%s'", labels_name);
  if (n > 0 && H5Dwrite(lds, str, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels) < 0) FAIL("cannot write %s", labels_name);
  if (write_int_attr(file, count_attr, (int64_t)n) < 0 || write_int_attr(file, "embedding_dim", (int64_t)d) < 0)
    FAIL("cannot write attributes");
  aspace = H5Screate(H5S_SCALAR);
  attr = H5Acreate2(file, "embedding_type", str, aspace, H5P_DEFAULT, H5P_DEFAULT);
  if (attr < 0 || H5Awrite(attr, str, &type_value) < 0) FAIL("cannot write attribute embedding_type");
  rc = 0;
done:
  if (attr >= 0) H5Aclose(attr);
  if (aspace >= 0) H5Sclose(aspace);
  if (lds >= 0) H5Dclose(lds);
  if (lspace >= 0) H5Sclose(lspace);
  if (str >= 0) H5Tclose(str);
  if (ds >= 0) H5Dclose(ds);
  if (plist >= 0) H5Pclose(plist);
  if (space >= 0) H5Sclose(space);
  if (file >= 0 && H5Fclose(file) < 0 && rc == 0) { snprintf(err, errlen, "cannot close HDF5 file"); rc = -1; }
  return rc;
}

static int read_embeddings(const char *path, const char *labels_name, const char *count_attr, uint64_t *n, uint64_t *d,
                          float **emb, char ***labels, int64_t *count_value, char *type_value, size_t type_len,
                          char *err, size_t errlen) {
  int rc = -1;
  hid_t file = -1, ds = -1, space = -1, lds = -1, str = -1, attr = -1;
  *emb = NULL;
  *labels = NULL;
  H5Eset_auto2(H5E_DEFAULT, silent, NULL);
  file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) FAIL("cannot open HDF5 file");
  ds = H5Dopen2(file, "embeddings", H5P_DEFAULT);
  if (ds < 0) FAIL("no dataset 'embeddings'");
  space = H5Dget_space(ds);
  hsize_t dims[2] = {0, 0};
  if (H5Sget_simple_extent_ndims(space) != 2) FAIL("embeddings is not 2-D");
  H5Sget_simple_extent_dims(space, dims, NULL);
  *n = dims[0];
  *d = dims[1];
  *emb = (float *)malloc(sizeof(float) * (dims[0] * dims[1] + 1));
  if (dims[0] * dims[1] > 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *emb) < 0) FAIL("cannot read embeddings");
  lds = H5Dopen2(file, labels_name, H5P_DEFAULT);
  if (lds < 0) FAIL("no dataset '%s'", labels_name);
  str = vlen_utf8();
  *labels = (char **)calloc(dims[0] + 1, sizeof(char *));
  if (dims[0] > 0 && H5Dread(lds, str, H5S_ALL, H5S_ALL, H5P_DEFAULT, *labels) < 0) FAIL("cannot read %s", labels_name);
  attr = H5Aopen(file, count_attr, H5P_DEFAULT);
  if (attr < 0 || H5Aread(attr, H5T_NATIVE_INT64, count_value) < 0) FAIL("no attribute %s", count_attr);
  H5Aclose(attr);
  attr = H5Aopen(file, "embedding_type", H5P_DEFAULT);
  char *tv = NULL;
  if (attr < 0 || H5Aread(attr, str, &tv) < 0) FAIL("no attribute embedding_type");
  snprintf(type_value, type_len, "%s", tv ? tv : "");
  free(tv);
  rc = 0;
done:
  if (attr >= 0) H5Aclose(attr);
  if (str >= 0) H5Tclose(str);
  if (lds >= 0) H5Dclose(lds);
  if (space >= 0) H5Sclose(space);
  if (ds >= 0) H5Dclose(ds);
  if (file >= 0) H5Fclose(file);
  return rc;
}

void ck_h5_free_read(float *emb, char **labels, uint64_t n) {
  free(emb);
  if (labels) {
    for (uint64_t i = 0; i < n; i++) free(labels[i]);
    free(labels);
  }
}

int ck_h5_write_embeddings(const char *path, const float *emb, uint64_t n, uint64_t d, const char *labels_name,
                           const char *const *labels, const char *count_attr, const char *type_value, char *err,
                           size_t errlen) {
  pthread_mutex_lock(&h5_lock);
  int rc = write_embeddings(path, emb, n, d, labels_name, labels, count_attr, type_value, err, errlen);
  pthread_mutex_unlock(&h5_lock);
  return rc;
}

int ck_h5_read_embeddings(const char *path, const char *labels_name, const char *count_attr, uint64_t *n, uint64_t *d,
                          float **emb, char ***labels, int64_t *count_value, char *type_value, size_t type_len,
                          char *err, size_t errlen) {
  pthread_mutex_lock(&h5_lock);
  int rc = read_embeddings(path, labels_name, count_attr, n, d, emb, labels, count_value, type_value, type_len, err, errlen);
  pthread_mutex_unlock(&h5_lock);
  return rc;
}

struct ck_h5_reader {
  hid_t file, ds, lds, str;
  hid_t half;  // IEEE binary16 in native order when the dataset stores exactly that, else -1
};

void ck_h5_reader_close(ck_h5_reader *r) {
  if (!r) return;
  pthread_mutex_lock(&h5_lock);
  if (r->str >= 0) H5Tclose(r->str);
  if (r->half >= 0) H5Tclose(r->half);
  if (r->lds >= 0) H5Dclose(r->lds);
  if (r->ds >= 0) H5Dclose(r->ds);
  if (r->file >= 0) H5Fclose(r->file);
  pthread_mutex_unlock(&h5_lock);
  free(r);
}

ck_h5_reader *ck_h5_reader_open(const char *path, const char *labels_name, uint64_t *n, uint64_t *d, char *err,
                                size_t errlen) {
  ck_h5_reader *r = (ck_h5_reader *)calloc(1, sizeof(ck_h5_reader));
  hid_t space = -1, lspace = -1;
  int ok = 0;
  r->file = r->ds = r->lds = r->str = r->half = -1;
  pthread_mutex_lock(&h5_lock);
  H5Eset_auto2(H5E_DEFAULT, silent, NULL);
  r->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (r->file < 0) FAIL("cannot open HDF5 file");
  r->ds = H5Dopen2(r->file, "embeddings", H5P_DEFAULT);
  if (r->ds < 0) FAIL("no dataset 'embeddings'");
  hid_t type = H5Dget_type(r->ds);
  H5T_class_t cls = type < 0 ? H5T_NO_CLASS : H5Tget_class(type);
  if (cls == H5T_FLOAT && H5Tget_size(type) == 2 && H5Tget_precision(type) == 16 && H5Tget_ebias(type) == 15) {
    size_t spos, epos, esize, mpos, msize;
    if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) >= 0 && spos == 15 && epos == 10 && esize == 5 && mpos == 0 &&
        msize == 10) {
      // HDF5 converts half floats to float in software, ~100x slower than reading: read them as
      // they are and let the caller widen them.
      r->half = H5Tcopy(type);
      H5Tset_order(r->half, H5T_ORDER_LE);
    }
  }
  if (type >= 0) H5Tclose(type);
  if (cls != H5T_FLOAT) FAIL("dataset 'embeddings' is not floating point");
  space = H5Dget_space(r->ds);
  hsize_t dims[2] = {0, 0};
  if (H5Sget_simple_extent_ndims(space) != 2) FAIL("dataset 'embeddings' is not 2-D");
  H5Sget_simple_extent_dims(space, dims, NULL);
  r->lds = H5Dopen2(r->file, labels_name, H5P_DEFAULT);
  if (r->lds < 0) FAIL("no dataset '%s'", labels_name);
  lspace = H5Dget_space(r->lds);
  hsize_t ldims[1] = {0};
  if (H5Sget_simple_extent_ndims(lspace) != 1) FAIL("dataset '%s' is not 1-D", labels_name);
  H5Sget_simple_extent_dims(lspace, ldims, NULL);
  if (ldims[0] != dims[0]) FAIL("'%s' has %llu entries for %llu embeddings", labels_name, (unsigned long long)ldims[0],
                                (unsigned long long)dims[0]);
  r->str = vlen_utf8();
  *n = dims[0];
  *d = dims[1];
  ok = 1;
done:
  if (lspace >= 0) H5Sclose(lspace);
  if (space >= 0) H5Sclose(space);
  pthread_mutex_unlock(&h5_lock);
  if (!ok) {
    ck_h5_reader_close(r);
    return NULL;
  }
  return r;
}

int ck_h5_reader_is_half(ck_h5_reader *r) { return r->half >= 0; }

int ck_h5_reader_rows(ck_h5_reader *r, uint64_t start, uint64_t count, uint64_t d, void *out, int as_half, char *err,
                      size_t errlen) {
  int rc = -1;
  hid_t fspace = -1, mspace = -1;
  pthread_mutex_lock(&h5_lock);
  fspace = H5Dget_space(r->ds);
  hsize_t off[2] = {start, 0}, cnt[2] = {count, d};
  if (H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off, NULL, cnt, NULL) < 0) FAIL("rows %llu..<%llu out of range",
                                                                                  (unsigned long long)start, (unsigned long long)(start + count));
  mspace = H5Screate_simple(2, cnt, NULL);
  if (H5Dread(r->ds, as_half && r->half >= 0 ? r->half : H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, out) < 0) FAIL("cannot read embeddings rows %llu..<%llu",
                                                                                   (unsigned long long)start, (unsigned long long)(start + count));
  rc = 0;
done:
  if (mspace >= 0) H5Sclose(mspace);
  if (fspace >= 0) H5Sclose(fspace);
  pthread_mutex_unlock(&h5_lock);
  return rc;
}

int ck_h5_reader_labels(ck_h5_reader *r, const uint64_t *rows, uint64_t count, char **out, char *err, size_t errlen) {
  int rc = -1;
  hid_t fspace = -1, mspace = -1;
  pthread_mutex_lock(&h5_lock);
  for (uint64_t i = 0; i < count; i++) out[i] = NULL;
  if (count == 0) { rc = 0; goto done; }
  fspace = H5Dget_space(r->lds);
  // Points in the order asked: HDF5 returns them in that order.
  if (H5Sselect_elements(fspace, H5S_SELECT_SET, count, (const hsize_t *)rows) < 0) FAIL("label rows out of range");
  hsize_t cnt[1] = {count};
  mspace = H5Screate_simple(1, cnt, NULL);
  if (H5Dread(r->lds, r->str, mspace, fspace, H5P_DEFAULT, out) < 0) FAIL("cannot read labels");
  rc = 0;
done:
  if (mspace >= 0) H5Sclose(mspace);
  if (fspace >= 0) H5Sclose(fspace);
  pthread_mutex_unlock(&h5_lock);
  return rc;
}

long ck_h5_open_objects(void) {
  pthread_mutex_lock(&h5_lock);
  ssize_t n = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
  pthread_mutex_unlock(&h5_lock);
  return (long)n;
}
