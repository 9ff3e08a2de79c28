#ifndef EMAILVAULT_CLI_BACKUP_H
#define EMAILVAULT_CLI_BACKUP_H
/*
 * emailvault backup --out DIR: a consistent copy of the data folder, with
 * or without a running engine (store/backup.h).
 */

int cmd_backup(int argc, char **argv);

#endif
