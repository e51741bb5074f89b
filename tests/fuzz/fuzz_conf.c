/* The configuration parser: the bytes as a configuration file. */
#include "fuzz.h"

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char path[256];
	fuzz_file("coral.conf", data, len, path, sizeof(path));
	static struct coral_conf conf;
	(void)coral_conf_load(&conf, path);
	return 0;
}
