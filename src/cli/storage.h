#ifndef EMAILVAULT_CLI_STORAGE_H
#define EMAILVAULT_CLI_STORAGE_H
/*
 * `emailvault storage check | verify | migrate s3|local [--sources DIR]
 * [--data DIR] [--config FILE]`: the S3 settings of emailvault.lua tried,
 * every object the archive names checked, the archive moved (docs/storage.md).
 */
int cmd_storage(int argc, char **argv);

#endif
