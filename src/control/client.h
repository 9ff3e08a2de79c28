#ifndef EMAILVAULT_CONTROL_CLIENT_H
#define EMAILVAULT_CONTROL_CLIENT_H
/*
 * The command-line side of the control socket: connect to a running engine,
 * send a chunk, print what comes back.
 */
#include <stddef.h>

/* The socket of the engine using DATA_DIR. */
void control_socket_path(const char *data_dir, char *buf, size_t len);

/* A connected socket, or -1 with a message a person can act on in ERR. */
int control_connect(const char *data_dir, char *err, size_t errlen);

/* Runs CHUNK; output goes to stdout, the error to stderr. Returns the exit
 * status of `emailvault eval`: 0 ok, 1 Lua error or no engine. A SIGINT
 * while waiting interrupts the chunk in the engine. */
int control_eval(int fd, const char *chunk, int json);
/* Runs CHUNK for its result: *REPLY gets it as JSON (malloc'd); what the
 * chunk prints is dropped. 0, or as control_eval. */
int control_query(int fd, const char *chunk, char **reply);
#define CONTROL_LOST 3		/* control_eval: the connection is gone */
#define CONTROL_ABANDONED 4	/* control_eval: gave up waiting; reconnect */

#endif
