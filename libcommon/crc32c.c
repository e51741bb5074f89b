/* CRC32C, table-driven (slicing by one byte). Fast enough for the Raft log; the block
 * checksums of cache fusion may want the SSE4.2 instruction later. */
#include "crc32c.h"

#include <pthread.h>

static uint32_t coral__crc_table[256];
static pthread_once_t coral__crc_once = PTHREAD_ONCE_INIT;

static void coral__crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		coral__crc_table[i] = c;
	}
}

uint32_t coral_crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&coral__crc_once, coral__crc_init);
	const uint8_t *p = buf;
	crc = ~crc;
	while (len--)
		crc = coral__crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}
