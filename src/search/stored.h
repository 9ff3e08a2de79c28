#ifndef EMAILVAULT_SEARCH_STORED_H
#define EMAILVAULT_SEARCH_STORED_H
/*
 * The text of an archived message, read from the store in bounded memory:
 * the indexer's and `show`'s one way from a message id to extract_*.
 */
#include "search/extract.h"

struct store_reader;

/* A message up to STORE_WHOLE_MAX is read whole, a bigger one walked as it
 * is read (its size does not count against LIM). 0, or -1 with errno
 * (ENOMEM: try again later; else it cannot be read). */
int extract_stored(struct store_reader *r, const char *hash, const struct extract_limits *lim,
    struct extract_text *t);

#endif
