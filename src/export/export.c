#include "export/export.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "export/mboxrd.h"
#include "paths.h"
#include "store/reader.h"

/* An mbox file being written: OUT.tmp until exporter_close renames it. */
struct mbox_file {
	char *key;		/* "" or "source/folder" with --by-folder */
	char *path, *tmp;
	FILE *f;
	struct mbox_file *next;
};

struct exporter {
	struct export_opts o;
	char *out;
	struct mbox_file *mboxes;
	unsigned long seq;
	/* the message being written: into an mbox, or a file of its own */
	struct mbox_file *mb;
	off_t mb_start;		/* where its "From " line begins */
	struct mboxrd_quoter quote;
	int fd;			/* -1: none, or the file is there already */
	char path[8192], tmp[8192];
	int failed, write_errno;
};

int
export_format_parse(const char *name, enum export_format *out)
{
	if (name == NULL)
		return -1;
	if (strcmp(name, "mbox") == 0)
		*out = EXPORT_MBOX;
	else if (strcmp(name, "eml") == 0)
		*out = EXPORT_EML;
	else if (strcmp(name, "maildir") == 0)
		*out = EXPORT_MAILDIR;
	else
		return -1;
	return 0;
}

/* ---- paths ------------------------------------------------------------- */

/* One path component of a folder name: nothing that climbs out of OUT. */
static void
safe_component(char *dst, size_t cap, const char *src, size_t n)
{
	size_t o = 0;

	if ((n == 1 && src[0] == '.') || (n == 2 && src[0] == '.' && src[1] == '.')) {
		snprintf(dst, cap, "%%2E%.*s", (int)n - 1, src + 1);
		return;
	}
	for (size_t i = 0; i < n && o + 4 < cap; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c < 0x20 || c == '%') {
			o += (size_t)snprintf(dst + o, cap - o, "%%%02X", c);
		} else {
			dst[o++] = (char)c;
		}
	}
	dst[o] = '\0';
}

/* OUT/source/folder (with --by-folder; the folder's '/' make sub-folders). */
static int
folder_dir(struct exporter *x, const struct export_msg *m, char *buf, size_t cap)
{
	size_t o = (size_t)snprintf(buf, cap, "%s", x->out);

	if (!x->o.by_folder)
		return o < cap ? 0 : -1;
	const char *parts[2] = { m->source ? m->source : "-", m->folder ? m->folder : "-" };
	for (int k = 0; k < 2; k++) {
		const char *s = parts[k];
		while (*s) {
			const char *slash = k == 1 ? strchr(s, '/') : NULL;
			size_t n = slash ? (size_t)(slash - s) : strlen(s);
			char comp[1024];
			if (n > 0) {
				safe_component(comp, sizeof(comp), s, n);
				o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "/%s", comp);
			}
			s += n;
			if (*s == '/')
				s++;
		}
	}
	return o < cap ? 0 : -1;
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* DIR/NAME is written through TMPDIR/.NAME.tmp; an existing NAME is kept
 * (it holds the same message: names carry the hash). */
static int
file_begin(struct exporter *x, const char *dir, const char *tmpdir, const char *name,
    char *err, size_t errlen)
{
	struct stat st;

	snprintf(x->path, sizeof(x->path), "%s/%s", dir, name);
	if (stat(x->path, &st) == 0)
		return 0;	/* x->fd stays -1: the bytes are skipped */
	snprintf(x->tmp, sizeof(x->tmp), "%s/.%s.tmp", tmpdir, name);
	x->fd = open(x->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (x->fd < 0) {
		snprintf(err, errlen, "cannot write %s: %s", x->tmp, strerror(errno));
		return -1;
	}
	return 0;
}

static int
file_end(struct exporter *x, int ok, char *err, size_t errlen)
{
	int fd = x->fd;

	x->fd = -1;
	if (fd < 0)
		return ok ? 0 : -1;
	if (close(fd) < 0 && ok) {
		snprintf(err, errlen, "cannot write %s: %s", x->tmp, strerror(errno));
		ok = 0;
	}
	if (ok && rename(x->tmp, x->path) < 0) {
		snprintf(err, errlen, "cannot rename %s: %s", x->tmp, strerror(errno));
		ok = 0;
	}
	if (!ok)
		unlink(x->tmp);
	return ok ? 0 : -1;
}

/* ---- the three formats ------------------------------------------------- */

static struct mbox_file *
mbox_for(struct exporter *x, const struct export_msg *m, char *err, size_t errlen)
{
	char dir[4096], key[4096];
	struct mbox_file *mb;
	int fd;

	if (x->o.by_folder) {
		if (folder_dir(x, m, dir, sizeof(dir)) < 0) {
			snprintf(err, errlen, "folder name too long");
			return NULL;
		}
		snprintf(key, sizeof(key), "%s", dir);
	} else {
		key[0] = '\0';
	}
	for (mb = x->mboxes; mb; mb = mb->next)
		if (strcmp(mb->key, key) == 0)
			return mb;
	if ((mb = calloc(1, sizeof(*mb))) == NULL)
		goto nomem;
	mb->key = strdup(key);
	if (x->o.by_folder) {
		/* OUT/source/folder.mbox: the tree of folders as files */
		size_t n = strlen(dir) + 6;
		mb->path = malloc(n);
		if (mb->path)
			snprintf(mb->path, n, "%s.mbox", dir);
		char *slash = mb->path ? strrchr(mb->path, '/') : NULL;
		if (slash) {
			*slash = '\0';
			if (paths_mkdir_p(mb->path, 0700) < 0) {
				snprintf(err, errlen, "cannot create %s: %s", mb->path, strerror(errno));
				*slash = '/';
				goto fail;
			}
			*slash = '/';
		}
	} else {
		mb->path = strdup(x->out);
	}
	if (mb->key == NULL || mb->path == NULL)
		goto nomem;
	size_t tn = strlen(mb->path) + 8;
	if ((mb->tmp = malloc(tn)) == NULL)
		goto nomem;
	snprintf(mb->tmp, tn, "%s.tmp", mb->path);
	if (access(mb->path, F_OK) == 0) {
		snprintf(err, errlen, "%s exists: exports never overwrite a file (choose another --out)",
		    mb->path);
		goto fail;
	}
	fd = open(mb->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || (mb->f = fdopen(fd, "w")) == NULL) {
		snprintf(err, errlen, "cannot create %s: %s", mb->tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto fail;
	}
	mb->next = x->mboxes;
	x->mboxes = mb;
	return mb;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	if (mb) {
		free(mb->key);
		free(mb->path);
		free(mb->tmp);
		free(mb);
	}
	return NULL;
}

static int
begin_mbox(struct exporter *x, const struct export_msg *m, char *err, size_t errlen)
{
	struct mbox_file *mb = mbox_for(x, m, err, errlen);
	char when[64];
	time_t t = (time_t)m->date;
	struct tm tm;
	const char *who = m->sender && *m->sender && !strpbrk(m->sender, " \t\r\n") ? m->sender :
	    "MAILER-DAEMON";

	if (mb == NULL)
		return -1;
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%a %b %e %H:%M:%S %Y", &tm);
	if ((x->mb_start = ftello(mb->f)) < 0 || fprintf(mb->f, "From %s %s\n", who, when) < 0) {
		snprintf(err, errlen, "cannot write %s: %s", mb->tmp, strerror(errno));
		return -1;
	}
	x->mb = mb;
	mboxrd_quote_init(&x->quote);
	return 0;
}

/* Takes the message being written back out of its mbox: a message that
 * could not be read or written whole is not left there in part. */
static int
mbox_drop(struct exporter *x, char *err, size_t errlen)
{
	struct mbox_file *mb = x->mb;

	x->mb = NULL;
	if (fflush(mb->f) != 0 || ftruncate(fileno(mb->f), x->mb_start) < 0 ||
	    fseeko(mb->f, x->mb_start, SEEK_SET) < 0) {
		snprintf(err, errlen, "cannot write %s: %s", mb->tmp, strerror(errno));
		return -1;
	}
	return 0;
}

static int
mbox_out(void *ud, const char *p, size_t n)
{
	return fwrite(p, 1, n, ud) == n ? 0 : -1;
}

static void
file_stem(const struct export_msg *m, char *buf, size_t cap)
{
	time_t t = (time_t)m->date;
	struct tm tm;
	char when[32];

	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y%m%d-%H%M%S", &tm);
	snprintf(buf, cap, "%s-%.16s", when, m->hash);
}

static int
begin_eml(struct exporter *x, const struct export_msg *m, char *err, size_t errlen)
{
	char dir[4096], name[128];

	if (folder_dir(x, m, dir, sizeof(dir)) < 0 || paths_mkdir_p(dir, 0700) < 0) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	file_stem(m, name, sizeof(name));
	strncat(name, ".eml", sizeof(name) - strlen(name) - 1);
	return file_begin(x, dir, dir, name, err, errlen);
}

/* Maildir info flags (alphabetical) from IMAP system flags. */
static void
maildir_info(const char *flags, char *buf, size_t cap)
{
	static const struct { const char *imap; char c; } map[] = {
		{ "\\Draft", 'D' }, { "\\Flagged", 'F' }, { "\\Answered", 'R' },
		{ "\\Seen", 'S' }, { "\\Deleted", 'T' },
	};
	size_t o = 0;

	o += (size_t)snprintf(buf, cap, ":2,");
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		const char *p = flags ? flags : "";
		size_t n = strlen(map[i].imap);
		while ((p = strstr(p, map[i].imap)) != NULL) {
			if (p[n] == '\0' || p[n] == ' ') {
				if (o + 1 < cap)
					buf[o++] = map[i].c;
				break;
			}
			p += n;
		}
	}
	buf[o < cap ? o : cap - 1] = '\0';
}

static int
begin_maildir(struct exporter *x, const struct export_msg *m, char *err, size_t errlen)
{
	char dir[4096], sub[4200], tmp[4200], name[200], info[16];
	static const char *const subs[] = { "cur", "new", "tmp" };

	if (folder_dir(x, m, dir, sizeof(dir)) < 0) {
		snprintf(err, errlen, "folder name too long");
		return -1;
	}
	for (int i = 0; i < 3; i++) {
		snprintf(sub, sizeof(sub), "%s/%s", dir, subs[i]);
		if (paths_mkdir_p(sub, 0700) < 0) {
			snprintf(err, errlen, "cannot create %s: %s", sub, strerror(errno));
			return -1;
		}
	}
	/* A unique, stable name: the date and the hash; the info part keeps
	 * the flags the message had when it was archived. */
	maildir_info(m->flags, info, sizeof(info));
	snprintf(name, sizeof(name), "%lld.%.32s.emailvault%s", (long long)m->date, m->hash, info);
	snprintf(sub, sizeof(sub), "%s/cur", dir);
	snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
	return file_begin(x, sub, tmp, name, err, errlen);
}

/* ---- the exporter ------------------------------------------------------ */

struct exporter *
exporter_open(const struct export_opts *o, char *err, size_t errlen)
{
	struct exporter *x;

	if (o->out == NULL || *o->out == '\0') {
		snprintf(err, errlen, "--out PATH is required");
		return NULL;
	}
	if ((x = calloc(1, sizeof(*x))) == NULL || (x->out = strdup(o->out)) == NULL) {
		free(x);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	x->o = *o;
	x->o.out = x->out;
	x->fd = -1;
	/* a trailing '/' would double up in paths */
	for (size_t n = strlen(x->out); n > 1 && x->out[n - 1] == '/'; n--)
		x->out[n - 1] = '\0';
	if (o->format != EXPORT_MBOX || o->by_folder) {
		if (paths_mkdir_p(x->out, 0700) < 0) {
			snprintf(err, errlen, "cannot create %s: %s", x->out, strerror(errno));
			free(x->out);
			free(x);
			return NULL;
		}
	}
	/* A single mbox is created now: an existing file is refused before
	 * any work, and an export of nothing is an empty mbox. */
	if (o->format == EXPORT_MBOX && !o->by_folder && mbox_for(x, NULL, err, errlen) == NULL) {
		free(x->out);
		free(x);
		return NULL;
	}
	return x;
}

int
exporter_begin(struct exporter *x, const struct export_msg *m, char *err, size_t errlen)
{
	/* the last one begun and never ended: dropped */
	if (x->mb && mbox_drop(x, err, errlen) < 0)
		return -1;
	if (x->fd >= 0)
		file_end(x, 0, err, errlen);
	x->failed = 0;
	switch (x->o.format) {
	case EXPORT_MBOX:
		return begin_mbox(x, m, err, errlen);
	case EXPORT_EML:
		return begin_eml(x, m, err, errlen);
	case EXPORT_MAILDIR:
		return begin_maildir(x, m, err, errlen);
	}
	return -1;
}

int
exporter_write(struct exporter *x, const char *p, size_t n)
{
	if (x->failed)
		return -1;
	if (x->mb)
		x->failed = mboxrd_quote(&x->quote, p, n, mbox_out, x->mb->f) < 0;
	else if (x->fd >= 0)
		x->failed = write_all(x->fd, p, n) < 0;
	if (x->failed)
		x->write_errno = errno;
	return x->failed ? -1 : 0;
}

int
exporter_end(struct exporter *x, int ok, char *err, size_t errlen)
{
	if (x->mb) {
		struct mbox_file *mb = x->mb;
		/* The message, then one newline that a reader takes off again. */
		if (ok && !x->failed && (mboxrd_quote_end(&x->quote, mbox_out, mb->f) < 0 ||
		    fputc('\n', mb->f) == EOF)) {
			x->failed = 1;
			x->write_errno = errno;
		}
		if (x->failed)
			snprintf(err, errlen, "cannot write %s: %s", mb->tmp, strerror(x->write_errno));
		if (!ok || x->failed) {
			char why[512];
			mbox_drop(x, why, sizeof(why));	/* ERR says the first failure */
			return -1;
		}
		x->mb = NULL;
		return 0;
	}
	if (x->failed) {
		snprintf(err, errlen, "cannot write %s: %s", x->tmp, strerror(x->write_errno));
		ok = 0;
	}
	return file_end(x, ok, err, errlen);
}

int
exporter_add(struct exporter *x, const struct export_msg *m, const char *data, size_t len,
    char *err, size_t errlen)
{
	if (exporter_begin(x, m, err, errlen) < 0)
		return -1;
	exporter_write(x, data, len);
	return exporter_end(x, 1, err, errlen);
}

static int
stored_out(void *ud, const char *p, size_t n)
{
	return exporter_write(ud, p, n);
}

int
exporter_add_stored(struct exporter *x, const struct export_msg *m, struct store_reader *r,
    char *err, size_t errlen)
{
	int rc, e;

	if (exporter_begin(x, m, err, errlen) < 0)
		return -1;
	rc = store_reader_copy(r, m->hash, stored_out, x);
	e = errno;
	if (exporter_end(x, rc == 0, err, errlen) < 0 && rc != -1)
		return -1;	/* ERR says what could not be written */
	if (rc == -1) {
		snprintf(err, errlen, "message %s is recorded but its bytes cannot be read: %s "
		    "(run emailvault verify)", m->hash, strerror(e));
		return -1;
	}
	return 0;
}

int
exporter_close(struct exporter *x, int ok, char *err, size_t errlen)
{
	int rc = ok ? 0 : -1;

	if (x->fd >= 0)		/* a message begun and never ended */
		file_end(x, 0, err, errlen);
	while (x->mboxes) {
		struct mbox_file *mb = x->mboxes;
		x->mboxes = mb->next;
		if (fflush(mb->f) != 0 || fsync(fileno(mb->f)) < 0) {
			if (rc == 0)
				snprintf(err, errlen, "cannot write %s: %s", mb->tmp, strerror(errno));
			rc = -1;
		}
		fclose(mb->f);
		if (rc == 0 && rename(mb->tmp, mb->path) < 0) {
			snprintf(err, errlen, "cannot rename %s: %s", mb->tmp, strerror(errno));
			rc = -1;
		}
		if (rc != 0)
			unlink(mb->tmp);
		free(mb->key);
		free(mb->path);
		free(mb->tmp);
		free(mb);
	}
	free(x->out);
	free(x);
	return rc;
}
