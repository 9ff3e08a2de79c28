#ifndef EMAILVAULT_THREAD_NAME_H
#define EMAILVAULT_THREAD_NAME_H
/*
 * Names the calling thread ("ev-compress", "ev-index", ...: at most 15
 * characters) so that top -H, ps -L, perf and /proc/PID/task/TID/comm say
 * which of the engine's threads uses the CPU. Best effort: a name that
 * cannot be set changes nothing else.
 */
void thread_name(const char *name);

#endif
