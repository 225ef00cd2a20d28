/*
 * fuzz: random hypercalls from inside a guest, fed a seed on the command
 * line. Each call picks a hypercall number and, for the families with
 * sub-ops, a command, then five argument registers drawn from values that
 * matter to Xen's checks: 0, 1, -1, boundaries, DOMID_SELF and the domain's
 * own id, vCPU ids in and out of range, a pointer into a scratch area
 * filled with random bytes, and addresses that fault (unmapped, Xen's hole,
 * non-canonical). The call is a raw syscall with the number in rax, so
 * numbers outside the hypercall page are tried too.
 *
 * Command line: seed=N (default 1), calls=N (default 3000), wild=1.
 *   - Without wild=1 only calls that cannot damage the caller are made (no
 *     page-table, trap-table, callback, GDT or vm_assist changes, no
 *     shutdown, block, poll or watchdog, no port closes or event-channel ABI
 *     changes, no vCPU context, no reservation changes, no grant copies
 *     into its own frames, no console output):
 *     the guest survives them all and reports SUCCESS. That is the
 *     conformance run: on xenpy only (suite.toml: oracle = false), as random
 *     calls from a real Xen's dom0 compare nothing.
 *   - With wild=1 every number and command is fair game (a quarter of the
 *     calls any number, half of the others any command): the guest usually
 *     destroys itself within a few hundred calls (a fault without a handler,
 *     a shutdown), which is what a hostile guest does. The hypervisor must stay sound;
 *     the host-side harness (tests/fuzz/guest.py) checks that.
 * The console reports how many calls were made and a checksum of their
 * results: the same seed gives the same line on every run.
 */

#include <xenpy-guest.h>

const char test_title[] = "Fuzz: random hypercalls from a guest";

#define SCRATCH_PAGES   4
#define DEFAULT_CALLS   3000
#define REPORT_EVERY    100000

static uint8_t scratch[SCRATCH_PAGES * PAGE_SIZE] __page_aligned_bss;
static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint64_t pick(const uint64_t *values, unsigned int nr)
{
    return values[rnd() % nr];
}

static const uint64_t bad_addresses[] = {
    0, 0x1000, 0x0000400000000000ULL, 0x00007ffffffff000ULL, 0x0000800000000000ULL,
    0xffff800000001000ULL, 0xffff87fffffff000ULL, 0xfffffffffffff000ULL,
};

static const uint64_t boundaries[] = {
    0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 4095, 4096, 4097,
    0x7fff, 0x8000, 0xffff, 0x10000, 0x7ff0 /* DOMID_SELF */, 0x7ff1, 0x7ff2, 0x7ff3, 0x7ff4, 0x7ff5,
    0x7fffffffULL, 0x80000000ULL, 0xffffffffULL, 0x100000000ULL, 0x7fffffffffffffffULL,
    0x8000000000000000ULL, 0xffffffffffffffffULL, 0xfffffffffffffffeULL,
};

/* A pointer into the scratch area, whose bytes around it are made random. */
static uint64_t scratch_pointer(void)
{
    unsigned long offset = rnd() % (sizeof(scratch) - 256);
    uint64_t *p = (uint64_t *)&scratch[offset & ~7UL];

    for ( unsigned int i = 0; i < 32; i++ )
    {
        uint64_t r = rnd();

        /* Mostly small values, as a structure's counts and ids are. */
        p[i] = (r & 3) == 0 ? r : (r & 3) == 1 ? r % 64 : (r & 3) == 2 ? pick(boundaries, ARRAY_SIZE(boundaries))
                                                                        : (uint64_t)&scratch[r % sizeof(scratch)];
    }
    return (uint64_t)&scratch[offset];
}

static uint64_t argument(void)
{
    switch ( rnd() % 8 )
    {
    case 0: case 1: case 2:
        return scratch_pointer();
    case 3:
        return pick(bad_addresses, ARRAY_SIZE(bad_addresses));
    case 4: case 5:
        return pick(boundaries, ARRAY_SIZE(boundaries));
    case 6:
        return rnd() % 8;       /* vCPU ids, ports, small counts */
    default:
        return rnd();
    }
}

/*
 * A call the caller survives: the hypercall and, for families with
 * sub-ops, the commands allowed (unknown ones included; a random command
 * could be a harmful one). NULL: any first argument.
 */
struct safe_call {
    unsigned int nr;
    const int8_t *cmds;
    unsigned int nr_cmds;
};

static const int8_t vcpu_cmds[] = {
    VCPUOP_is_up, VCPUOP_get_runstate_info, VCPUOP_register_runstate_memory_area,
    VCPUOP_set_periodic_timer, VCPUOP_stop_periodic_timer, VCPUOP_set_singleshot_timer,
    VCPUOP_stop_singleshot_timer, VCPUOP_get_physid, 16, 17, 99,
};
static const int8_t sched_cmds[] = { SCHEDOP_yield, SCHEDOP_remote_shutdown, SCHEDOP_pin_override, 8, 99 };
static const int8_t evtchn_cmds[] = {
    EVTCHNOP_bind_interdomain, EVTCHNOP_bind_virq, EVTCHNOP_bind_pirq, EVTCHNOP_send, EVTCHNOP_status,
    EVTCHNOP_alloc_unbound, EVTCHNOP_bind_ipi, EVTCHNOP_unmask, 14, 99,
};
static const int8_t memory_cmds[] = {
    XENMEM_maximum_ram_page, XENMEM_current_reservation, XENMEM_maximum_reservation,
    XENMEM_machphys_mfn_list, XENMEM_memory_map, XENMEM_machine_memory_map, XENMEM_machphys_mapping,
    XENMEM_maximum_gpfn, XENMEM_get_pod_target, XENMEM_get_sharing_freed_pages,
    XENMEM_get_sharing_shared_pages, XENMEM_get_vnumainfo, XENMEM_reserved_device_memory_map, 29, 99,
};
static const int8_t grant_cmds[] = {
    GNTTABOP_setup_table, GNTTABOP_dump_table, GNTTABOP_query_size, GNTTABOP_set_version,
    GNTTABOP_get_status_frames, GNTTABOP_get_version, 13, 99,
};
static const int8_t console_cmds[] = { CONSOLEIO_read, 2, 99 };

static const struct safe_call safe_calls[] = {
    { __HYPERVISOR_sched_op_compat, (const int8_t[]){ 0 }, 1 },    /* SCHEDOP_yield */
    { __HYPERVISOR_platform_op, NULL, 0 },
    { __HYPERVISOR_get_debugreg, NULL, 0 },
    { __HYPERVISOR_memory_op, memory_cmds, ARRAY_SIZE(memory_cmds) },
    { __HYPERVISOR_set_timer_op, NULL, 0 },
    { __HYPERVISOR_xen_version, NULL, 0 },
    { __HYPERVISOR_console_io, console_cmds, ARRAY_SIZE(console_cmds) },
    { __HYPERVISOR_physdev_op_compat, NULL, 0 },
    { __HYPERVISOR_grant_table_op, grant_cmds, ARRAY_SIZE(grant_cmds) },
    { __HYPERVISOR_vcpu_op, vcpu_cmds, ARRAY_SIZE(vcpu_cmds) },
    { __HYPERVISOR_xsm_op, NULL, 0 },
    { __HYPERVISOR_nmi_op, NULL, 0 },
    { __HYPERVISOR_sched_op, sched_cmds, ARRAY_SIZE(sched_cmds) },
    { __HYPERVISOR_xenoprof_op, NULL, 0 },
    { __HYPERVISOR_event_channel_op, evtchn_cmds, ARRAY_SIZE(evtchn_cmds) },
    { __HYPERVISOR_physdev_op, NULL, 0 },
    { __HYPERVISOR_hvm_op, NULL, 0 },
    { __HYPERVISOR_sysctl, NULL, 0 },
    { __HYPERVISOR_domctl, NULL, 0 },
    { __HYPERVISOR_kexec_op, NULL, 0 },
    { __HYPERVISOR_tmem_op, NULL, 0 },
    { __HYPERVISOR_argo_op, NULL, 0 },
    { __HYPERVISOR_xenpmu_op, NULL, 0 },
    { __HYPERVISOR_dm_op, NULL, 0 },
    { __HYPERVISOR_hypfs_op, NULL, 0 },
    { __HYPERVISOR_mca, NULL, 0 },
    { 11, NULL, 0 }, { 43, NULL, 0 }, { 47, NULL, 0 }, { 56, NULL, 0 }, { 63, NULL, 0 },
    { 64, NULL, 0 }, { 127, NULL, 0 }, { 128, NULL, 0 }, { 0xffff, NULL, 0 },
};

static long raw_hypercall(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
    register uint64_t rax asm("rax") = nr;
    register uint64_t rdi asm("rdi") = a1;
    register uint64_t rsi asm("rsi") = a2;
    register uint64_t rdx asm("rdx") = a3;
    register uint64_t r10 asm("r10") = a4;
    register uint64_t r8 asm("r8") = a5;

    asm volatile ( "syscall"
                   : "+r" (rax), "+r" (rdi), "+r" (rsi), "+r" (rdx), "+r" (r10), "+r" (r8)
                   :: "rcx", "r11", "r9", "memory", "cc" );
    return (long)rax;
}

static bool numeric_arg(const char *key, uint64_t *out)
{
    char buf[24];
    uint64_t value = 0;

    if ( !cmdline_get(key, buf, sizeof(buf)) )
        return true;
    for ( const char *p = buf; *p; p++ )
    {
        if ( *p < '0' || *p > '9' )
            return false;
        value = value * 10 + (uint64_t)(*p - '0');
    }
    *out = value;
    return true;
}

void test_main(void)
{
    uint64_t seed = 1, calls = DEFAULT_CALLS, wild = 0, checksum = 0;
    unsigned long errors = 0, successes = 0;

    if ( !numeric_arg("seed=", &seed) || !numeric_arg("calls=", &calls) || !numeric_arg("wild=", &wild) )
    {
        xtf_error("Error: bad command line: %s\n", (const char *)start_info->cmd_line);
        return;
    }
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
    printk("fuzz: seed %lu, %lu calls, %s\n", seed, calls, wild ? "every hypercall (wild=1)" : "safe calls");

    for ( uint64_t i = 0; i < calls; i++ )
    {
        uint64_t nr, a1;
        long rc;

        if ( wild && rnd() % 4 == 0 )
        {
            nr = rnd() % 8 ? rnd() % 64 : rnd();
            a1 = rnd() % 4 ? rnd() % 32 : argument();
        }
        else
        {
            const struct safe_call *c = &safe_calls[rnd() % ARRAY_SIZE(safe_calls)];

            nr = c->nr;
            if ( c->cmds && !(wild && rnd() % 2) )
                a1 = (uint64_t)c->cmds[rnd() % c->nr_cmds];
            else
                a1 = wild ? rnd() % 32 : argument();
        }
        rc = raw_hypercall(nr, a1, argument(), argument(), argument(), argument());
        checksum = (checksum ^ (uint64_t)rc) * 0x100000001B3ULL;
        if ( rc < 0 )
            errors++;
        else
            successes++;
        if ( (i + 1) % REPORT_EVERY == 0 )
            printk("fuzz: %lu calls\n", (unsigned long)(i + 1));
    }

    printk("fuzz: %lu calls made: %lu errors, %lu successes, result checksum %016lx\n",
           (unsigned long)calls, errors, successes, checksum);
    /* The guest is intact after them: Xen still answers it. */
    check("intact-version", "6.1", HYPERVISOR_xen_version(XENVER_version, NULL) > 0, 1,
          "HYPERVISOR_xen_version(XENVER_version) after the calls");
    if ( xtf_ok() )
        xtf_success(NULL);
}
