/*
 * The guest's handles on the hypervisor: start_info, shared_info, the
 * hypercall page, pfn/mfn translation, shutdown.
 */

#include <arch/processor.h>
#include <xenpy-guest/hypervisor.h>
#include <xenpy-guest/lib.h>
#include <xenpy-guest/setup.h>
#include <xenpy-guest/spinlock.h>

start_info_t *start_info;
shared_info_t *shared_info;
bool hypercall_page_ready;

/*
 * A reserved, page-aligned, otherwise unused page inside the kernel image.
 * map_shared_info() replaces its mapping with the shared_info frame.
 */
static uint8_t shared_info_page[PAGE_SIZE] __page_aligned_bss;

long mfn_to_pfn(xen_pfn_t mfn)
{
    const xen_pfn_t *p2m = p2m_list();

    for ( unsigned long pfn = 0; pfn < start_info->nr_pages; pfn++ )
    {
        if ( p2m[pfn] == mfn )
            return (long)pfn;
    }

    return -1;
}

int map_shared_info(void)
{
    uint64_t pte = (start_info->shared_info & ~(uint64_t)(PAGE_SIZE - 1)) |
                   _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY;
    long rc;

    rc = HYPERVISOR_update_va_mapping((unsigned long)shared_info_page, pte,
                                      UVMF_INVLPG);
    if ( rc )
        return (int)rc;

    shared_info = (shared_info_t *)shared_info_page;
    barrier();

    return 0;
}

int unmap_shared_info(void)
{
    return (int)HYPERVISOR_update_va_mapping((unsigned long)shared_info_page, 0, UVMF_INVLPG);
}

void spin_wait_yield(void)
{
    if ( hypercall_page_ready )
        (void)HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
    else
        cpu_relax();
}

void shutdown_domain(unsigned int reason)
{
    struct sched_shutdown shutdown = { .reason = reason };

    if ( hypercall_page_ready )
    {
        (void)HYPERVISOR_sched_op(SCHEDOP_shutdown, &shutdown);

        /*
         * Xen pauses every vCPU of a domain that shuts down, so this is not
         * reached; if it is, stop here without spinning.
         */
        for ( ;; )
            (void)HYPERVISOR_sched_op(SCHEDOP_block, NULL);
    }

    /* No hypercall is possible: an unhandled #UD makes the hypervisor crash the domain. */
    for ( ;; )
        __asm__ __volatile__ ("ud2");
}

void crash_domain(void)
{
    shutdown_domain(SHUTDOWN_crash);
}

bool cmdline_get(const char *key, char *buf, size_t size)
{
    const char *p = (const char *)start_info->cmd_line;
    const char *end = p + strnlen(p, sizeof(start_info->cmd_line));
    size_t keylen = strlen(key);

    while ( p < end )
    {
        const char *word = p;
        size_t len;

        while ( p < end && *p != ' ' )
            p++;
        len = p - word;
        if ( len > keylen && !strncmp(word, key, keylen) )
        {
            len -= keylen;
            if ( len >= size )
                len = size - 1;
            memcpy(buf, word + keylen, len);
            buf[len] = '\0';
            return true;
        }
        while ( p < end && *p == ' ' )
            p++;
    }

    return false;
}
