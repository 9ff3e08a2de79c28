#ifndef EMAILVAULT_CONTROL_FRAME_H
#define EMAILVAULT_CONTROL_FRAME_H
/*
 * Frames on the control socket: a 4-byte big-endian length (of type and
 * payload), a type byte and the payload.
 *   client -> engine: 'E' eval (payload: flags byte, then the chunk)
 *                     'I' interrupt the running chunk
 *                     'C' complete (payload: the word typed so far)
 *   engine -> client: 'O' output of print, 'R' result, 'X' error,
 *                     'L' completion candidates, one per line
 */
#include <stddef.h>
#include <stdint.h>

#define FRAME_MAX (16u << 20)
#define FRAME_HEADER 5

#define EVAL_FLAG_JSON 0x01

/* Blocking helpers for the client side. */
int frame_write(int fd, char type, const void *data, size_t len);
/* Reads one frame; *payload is malloc'd and NUL-terminated. 0, or -1 with
 * errno (EPROTO for a malformed frame, 0 at end of file). */
int frame_read(int fd, char *type, char **payload, size_t *len);

#endif
