#ifndef EMAILVAULT_NOTIFY_H
#define EMAILVAULT_NOTIFY_H
/*
 * The service manager's readiness protocol (sd_notify(3)) without linking
 * libsystemd: one datagram to the socket named by $NOTIFY_SOCKET, such as
 * "READY=1" or "RELOADING=1". Without the variable nothing is sent, so the
 * engine runs the same under systemd (Type=notify), another supervisor or
 * a terminal.
 */

/* Sends STATE ("KEY=value" lines). 0 when sent or when no manager listens
 * ($NOTIFY_SOCKET unset); -1 with errno when the send failed. */
int notify_send(const char *state);

/* "RELOADING=1" with the MONOTONIC_USEC=... that systemd wants with it. */
int notify_reloading(void);

#endif
