#ifndef EMAILVAULT_TEST_CHECK_H
#define EMAILVAULT_TEST_CHECK_H
/*
 * A very small test harness: each test is a function; CHECK records a
 * failure with file:line and carries on, so one run shows every problem.
 * main() is written with RUN(test_fn) lines and ends with DONE().
 */
#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;
static const char *check_current = "";

#define CHECK(cond) do { \
	check_count++; \
	if (!(cond)) { \
		check_failures++; \
		fprintf(stderr, "%s:%d: %s: check failed: %s\n", \
		    __FILE__, __LINE__, check_current, #cond); \
	} \
} while (0)

#define CHECK_STR(a, b) do { \
	const char *check_a_ = (a), *check_b_ = (b); \
	check_count++; \
	if (check_a_ == NULL || check_b_ == NULL || strcmp(check_a_, check_b_) != 0) { \
		check_failures++; \
		fprintf(stderr, "%s:%d: %s: \"%s\" != \"%s\"\n", __FILE__, __LINE__, \
		    check_current, check_a_ ? check_a_ : "(null)", \
		    check_b_ ? check_b_ : "(null)"); \
	} \
} while (0)

#define CHECK_INT(a, b) do { \
	long long check_a_ = (long long)(a), check_b_ = (long long)(b); \
	check_count++; \
	if (check_a_ != check_b_) { \
		check_failures++; \
		fprintf(stderr, "%s:%d: %s: %s == %lld, expected %lld\n", \
		    __FILE__, __LINE__, check_current, #a, check_a_, check_b_); \
	} \
} while (0)

#define RUN(fn) do { check_current = #fn; fn(); } while (0)

#define DONE() do { \
	printf("%d checks, %d failed\n", check_count, check_failures); \
	return check_failures ? 1 : 0; \
} while (0)

#endif
