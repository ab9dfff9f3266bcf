/* Test runner: `dml_tests [suite ...]` runs the tests of the named suites (a suite is a test
 * file's name without "test_" and ".c"), or every test without arguments; prints one line per
 * test and the closing "N passed, N failed". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"

typedef struct {
  const char *suite;
  const char *name;
  dml_test_fn fn;
} test_entry;

static test_entry tests[2048];
static int n_tests;
static int current_failed;

static const char *suite_of(const char *file) {
  static char buf[2048][64];
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  if (strncmp(base, "test_", 5) == 0) base += 5;
  char *out = buf[n_tests];
  snprintf(out, 64, "%s", base);
  char *dot = strrchr(out, '.');
  if (dot) *dot = '\0';
  return out;
}

void dml_test_register(const char *file, const char *name, dml_test_fn fn) {
  if (n_tests >= (int)(sizeof tests / sizeof tests[0])) {
    fprintf(stderr, "too many tests\n");
    exit(2);
  }
  tests[n_tests].suite = suite_of(file);
  tests[n_tests].name = name;
  tests[n_tests].fn = fn;
  n_tests++;
}

void dml_test_fail(void) { current_failed = 1; }

const char *dml_test_data_dir(void) { return DML_TEST_DATA_DIR; }

const char *dml_test_tmp_path(const char *name, char *buf, int buf_size) {
  mkdir(DML_TEST_TMP_DIR, 0755);
  snprintf(buf, (size_t)buf_size, "%s/%s", DML_TEST_TMP_DIR, name);
  return buf;
}

int main(int argc, char **argv) {
  int passed = 0, failed = 0;
  const char *only_test = getenv("DML_TEST_ONLY");
  for (int i = 0; i < n_tests; i++) {
    int selected = argc < 2;
    for (int a = 1; a < argc; a++)
      if (strcmp(argv[a], tests[i].suite) == 0) selected = 1;
    if (only_test && strcmp(only_test, tests[i].name) != 0) selected = 0;
    if (!selected) continue;
    current_failed = 0;
    dml_clear_error();
    tests[i].fn();
    if (current_failed) {
      failed++;
      printf("FAIL %s.%s\n", tests[i].suite, tests[i].name);
    } else {
      passed++;
      printf("ok   %s.%s\n", tests[i].suite, tests[i].name);
    }
    fflush(stdout);
  }
  printf("%d passed, %d failed\n", passed, failed);
  if (passed + failed == 0) {
    fprintf(stderr, "no test matched\n");
    return 2;
  }
  return failed ? 1 : 0;
}
