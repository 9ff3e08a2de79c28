/*
 * Values of the query language's operators, and the distance that finds
 * the operator a misspelt name meant. Pure functions on byte strings.
 */
#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "search/query_tree.h"

/* "10k", "5M", "2G", "300" (bytes; k/M/G are powers of 1024, a trailing
 * B is allowed). */
int
query_size(const char *s, size_t n, int64_t *out)
{
	int64_t v = 0, mult = 1;
	size_t i = 0;

	if (n == 0 || !isdigit((unsigned char)s[0]))
		return -1;
	for (; i < n && isdigit((unsigned char)s[i]); i++) {
		if (v > (INT64_MAX - 9) / 10)
			return -2;
		v = v * 10 + (s[i] - '0');
	}
	if (i < n) {
		switch (s[i]) {
		case 'k': case 'K': mult = 1024; i++; break;
		case 'm': case 'M': mult = 1024 * 1024; i++; break;
		case 'g': case 'G': mult = 1024 * 1024 * 1024; i++; break;
		default: break;
		}
		if (i < n && (s[i] == 'b' || s[i] == 'B'))
			i++;
	}
	if (i != n)
		return -1;
	if (v > INT64_MAX / mult)
		return -2;
	*out = v * mult;
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int
read_num(const char *s, size_t n, size_t *i, int min, int max, int *out)
{
	int v = 0, k = 0;

	while (*i < n && isdigit((unsigned char)s[*i]) && k < max) {
		v = v * 10 + (s[(*i)++] - '0');
		k++;
	}
	*out = v;
	return k >= min ? 0 : -1;
}

/* YYYY-MM-DD or YYYY/MM/DD (month and day may have one digit) as unix
 * seconds of its UTC midnight. */
int
query_date(const char *s, size_t n, int64_t *out)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	size_t i = 0;
	int y, m, d, sep, leap;

	if (read_num(s, n, &i, 4, 4, &y) != 0 || i >= n ||
	    (s[i] != '-' && s[i] != '/'))
		return -1;
	sep = s[i++];
	if (read_num(s, n, &i, 1, 2, &m) != 0 || i >= n || s[i++] != sep ||
	    read_num(s, n, &i, 1, 2, &d) != 0 || i != n)
		return -1;
	if (y < 1900 || m < 1 || m > 12 || d < 1)
		return -1;
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d > mdays[m - 1] + (m == 2 && leap))
		return -1;
	*out = days_from_civil(y, m, d) * 86400;
	return 0;
}

int
query_edit_distance(const char *a, size_t na, const char *b)
{
	int row[34], i, j, prev, tmp, nb = (int)strlen(b);

	if (na > 32 || nb > 32)
		return 99;
	for (j = 0; j <= nb; j++)
		row[j] = j;
	for (i = 1; i <= (int)na; i++) {
		prev = row[0];
		row[0] = i;
		for (j = 1; j <= nb; j++) {
			tmp = row[j];
			row[j] = prev + (tolower((unsigned char)a[i - 1]) != b[j - 1]);
			if (row[j - 1] + 1 < row[j])
				row[j] = row[j - 1] + 1;
			if (tmp + 1 < row[j])
				row[j] = tmp + 1;
			prev = tmp;
		}
	}
	return row[nb];
}
