#ifndef EMAILVAULT_TEST_MAILFILES_H
#define EMAILVAULT_TEST_MAILFILES_H
/*
 * Mail files for the tests: a file read whole, the fixtures folder
 * (EMAILVAULT_FIXTURES), and the real-world corpus beside the repository
 * (EMAILVAULT_CORPUS), loaded as a list of messages.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *
slurp(const char *path, size_t *len)
{
	FILE *fp;
	char *buf = NULL;
	long n;

	if ((fp = fopen(path, "rb")) == NULL)
		return NULL;
	if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 &&
	    fseek(fp, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
	    fread(buf, 1, (size_t)n, fp) == (size_t)n) {
		buf[n] = '\0';
		*len = (size_t)n;
	} else {
		free(buf);
		buf = NULL;
	}
	fclose(fp);
	return buf;
}

static const char *
fixtures(void)
{
	const char *dir = getenv("EMAILVAULT_FIXTURES");

	return dir ? dir : "tests/fixtures";
}

static char corpus[2048];

static int
find_corpus(void)
{
	const char *env = getenv("EMAILVAULT_CORPUS");
	struct stat st;

	if (env != NULL)
		snprintf(corpus, sizeof corpus, "%s", env);
	else	/* repo root is fixtures/../..; the corpus sits beside it */
		snprintf(corpus, sizeof corpus, "%s/../../../shared/corpus/real",
		    fixtures());
	return stat(corpus, &st) == 0 && S_ISDIR(st.st_mode);
}

struct msg {
	char *path, *data;
	size_t len;
};

static struct msg *msgs;
static size_t nmsgs, capmsgs;

static void
load_dir(const char *dir)
{
	struct dirent *de;
	struct stat st;
	char path[4096];
	size_t n;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		if (stat(path, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			load_dir(path);
			continue;
		}
		n = strlen(de->d_name);
		if (n < 4 || strcmp(de->d_name + n - 4, ".eml") != 0)
			continue;
		if (nmsgs == capmsgs) {
			capmsgs = capmsgs ? 2 * capmsgs : 512;
			msgs = realloc(msgs, capmsgs * sizeof *msgs);
		}
		msgs[nmsgs].path = strdup(path);
		if ((msgs[nmsgs].data = slurp(path, &msgs[nmsgs].len)) != NULL)
			nmsgs++;
		else
			free(msgs[nmsgs].path);
	}
	closedir(d);
}

#endif
