/* Strict UTF-8, as Python's decoder reads it: no overlong forms, no surrogates, nothing
 * above U+10FFFF. Shared by the C parser (_csvblocks.c) and the profile (_profile.c). */
#ifndef CSVAULT_UTF8_H
#define CSVAULT_UTF8_H

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), 0 if invalid,
 * -1 if it may be valid but is cut off by end. */
static inline int utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned char c = p[0];
    int n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        else if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F;
    } else return 0;
    for (int i = 1; i < n; i++) {
        if (p + i >= end) return -1;
        unsigned char b = p[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
    }
    return n;
}

#endif
