/* The options grd-sim and gcs-sim share: --seeds N --first S --nodes K --steps T. Header-only. */
#ifndef CORAL_SIM_ARGS_H
#define CORAL_SIM_ARGS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sim_args {
	unsigned long long seeds, first, nodes, steps;
};

/* Fills a (already holding the defaults); 0, or 2 after printing the usage of prog. */
static inline int sim_args_parse(int argc, char **argv, const char *prog, struct sim_args *a)
{
	for (int i = 1; i < argc; i += 2) {
		unsigned long long v = i + 1 < argc ? strtoull(argv[i + 1], NULL, 10) : 0;
		if (i + 1 >= argc)
			goto usage;
		if (strcmp(argv[i], "--seeds") == 0) a->seeds = v;
		else if (strcmp(argv[i], "--first") == 0) a->first = v;
		else if (strcmp(argv[i], "--nodes") == 0) a->nodes = v;
		else if (strcmp(argv[i], "--steps") == 0) a->steps = v;
		else goto usage;
	}
	return 0;
usage:
	fprintf(stderr, "usage: %s [--seeds N] [--first S] [--nodes K] [--steps T]\n", prog);
	return 2;
}

#endif
