#ifndef EMAILVAULT_CLI_OAUTH2_H
#define EMAILVAULT_CLI_OAUTH2_H
/*
 * `emailvault oauth2 login [--sources DIR] [--data DIR] ID`: the device
 * authorization grant for a source whose file declares oauth2{...}.
 */
int cmd_oauth2(int argc, char **argv);

#endif
