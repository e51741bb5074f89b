/* CRC32C (Castagnoli): the SSE4.2 crc32 instruction where the CPU has it (checked once at
 * run time), else a table, a byte at a time. Every block read from or written to a data file
 * is checksummed whole (8 KiB), as is every redo record: with the table that was several
 * microseconds a block. */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

static uint32_t coral__crc_table[256];
static pthread_once_t coral__crc_once = PTHREAD_ONCE_INIT;
static uint32_t (*coral__crc_impl)(uint32_t, const uint8_t *, size_t);

static uint32_t coral__crc_table_run(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--)
		crc = coral__crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t coral__crc_hw_run(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;
	for (; len > 0 && ((uintptr_t)p & 7) != 0; len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	for (; len >= 8; len -= 8, p += 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
	}
	for (; len > 0; len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}
#endif

static void coral__crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		coral__crc_table[i] = c;
	}
	coral__crc_impl = coral__crc_table_run;
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("sse4.2"))
		coral__crc_impl = coral__crc_hw_run;
#endif
}

uint32_t coral_crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&coral__crc_once, coral__crc_init);
	return ~coral__crc_impl(~crc, buf, len);
}

uint32_t coral_crc32c_table(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&coral__crc_once, coral__crc_init);
	return ~coral__crc_table_run(~crc, buf, len);
}

const char *coral_crc32c_impl(void)
{
	pthread_once(&coral__crc_once, coral__crc_init);
	return coral__crc_impl == coral__crc_table_run ? "table" : "sse4.2";
}
