/* CRC32C (Castagnoli), the checksum of every Coral record and block. */
#ifndef CORAL_CRC32C_H
#define CORAL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues crc over buf; start with 0. */
uint32_t coral_crc32c(uint32_t crc, const void *buf, size_t len);
/* The same with the table alone (what the CPU instruction must agree with), and which of the
 * two coral_crc32c uses: "sse4.2" or "table". */
uint32_t coral_crc32c_table(uint32_t crc, const void *buf, size_t len);
const char *coral_crc32c_impl(void);

#endif
