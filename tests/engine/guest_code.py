"""Guest machine code of the engine tests, with the assembly it was made from (GNU as, Intel syntax).

The tests run without an assembler: each piece is its machine code in hex. ``test_guest_code_matches_source``
(needs binutils) re-assembles every source and checks the bytes, so the two cannot drift apart.

Layout (the domain's first pages, mapped at ``GUEST_VIRT_BASE + pfn * 4096``): the hypercall page at
:data:`HYPERCALL_PAGE`, code at :data:`CODE` (exception and callback handlers at ``CODE + 0x400``), data at
:data:`DATA`, the stack page below :data:`STACK_TOP`. ``DONE`` in the sources is
``SCHEDOP_shutdown(SHUTDOWN_poweroff)`` through the hypercall page.
"""

from __future__ import annotations

from typing import NamedTuple

HYPERCALL_PAGE = 0xFFFF_FFFF_8000_1000
CODE = 0xFFFF_FFFF_8000_2000
DATA = 0xFFFF_FFFF_8000_3000
STACK_TOP = 0xFFFF_FFFF_8000_5000
HANDLER = CODE + 0x400


class Piece(NamedTuple):
    """Machine code placed at ``CODE + offset``, and its source."""

    offset: int
    source: str
    code: bytes


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


PROGRAMS: dict[str, list[Piece]] = {
    "roundtrip": [
        Piece(
            0x0,
            """\
    mov rcx, 0x1111111111111111
    mov r11, 0x2222222222222222
    xor edi, edi
    call 0xffffffff80001220
    mov r12, rax
    mov r13, rcx
    mov r14, r11
    mov rdi, 0xa1
    mov rsi, 0xa2
    mov rdx, 0xa3
    mov r10, 0xa4
    mov r8, 0xa5
    call 0xffffffff800017e0
    mov r15, rax
    mov eax, 63
    mov rdi, 0xb1
    syscall
    mov rbx, rcx
    mov rbp, r11
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex(
                "48b9111111111111111149bb222222222222222231ffe805f2ffff4989c44989cd4d89de48c7c7a100000048c7c6a200"
                "000048c7c2a300000049c7c2a400000049c7c0a5000000e894f7ffff4989c7b83f00000048c7c7b10000000f054889cb"
                "4c89ddc70425f03f008000000000bf0200000048c7c6f03f0080e821f3ffff"
            ),
        ),
    ],
    "iret": [
        Piece(
            0x0,
            """\
    mov r9, rsp
    push 0xe02b
    push r9
    push r12
    push 0xe030
    lea rax, [rip + target]
    push rax
    push r13
    mov rax, 0x4242
    mov rcx, 0x1111
    mov r11, 0x2222
    jmp 0xffffffff800012e0
target:
    mov r12, rax
    mov r13, rcx
    mov r14, r11
    mov r15, rsp
    pushfq
    pop rbx
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex(
                "4989e1682be00000415141546830e00000488d051d00000050415548c7c04242000048c7c11111000049c7c322220000"
                "e9abf2ffff4989c44989cd4d89de4989e79c5bc70425f03f008000000000bf0200000048c7c6f03f0080e841f3ffff"
            ),
        ),
    ],
    "pagefault": [
        Piece(
            0x0,
            """\
    mov rdi, 0xffffffff80003000
    call 0xffffffff80001000
    mov rcx, 0x1c1c
    mov r11, 0x2b2b
    test r13, r13
    jnz 1f
    mov rax, [r12]
    jmp 2f
1:  mov qword ptr [r12], rax
2:
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex(
                "48c7c700300080e8f4efffff48c7c11c1c000049c7c32b2b00004d85ed7506498b0424eb0449890424c70425f03f0080"
                "00000000bf0200000048c7c6f03f0080e85bf3ffff"
            ),
        ),
        Piece(
            0x400,
            """\
handler:
    mov rsi, rsp
    mov rdi, 0xffffffff80003800
    mov ecx, 8
    cld
    rep movsq
    mov rbx, rsp
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex(
                "4889e648c7c700380080b908000000fcf348a54889e3c70425f03f008000000000bf0200000048c7c6f03f0080e86eef"
                "ffff"
            ),
        ),
    ],
    "upcall": [
        Piece(
            0x0,
            """\
    mov rdi, 0xffffffff80003000
    call 0xffffffff80001000
    mov edi, 0
    mov rsi, 0xffffffff80003100
    call 0xffffffff800013c0
    xor r12d, r12d
loop:
    xor edi, edi
    call 0xffffffff80001220
    inc r13
    cmp r13, 50
    je 3f
    test r12, r12
    jz loop
3:
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex(
                "48c7c700300080e8f4efffffbf0000000048c7c600310080e8a3f3ffff4531e431ffe8f9f1ffff49ffc54983fd327405"
                "4d85e474ebc70425f03f008000000000bf0200000048c7c6f03f0080e84ff3ffff"
            ),
        ),
        Piece(
            0x400,
            """\
callback:
    mov rsi, rsp
    mov rdi, 0xffffffff80003800
    mov ecx, 7
    cld
    rep movsq
    inc r12
    mov r14, r13
    mov rbx, rsp
    add rsp, 16
    push 0
    jmp 0xffffffff800012e0
""",
            _hex("4889e648c7c700380080b907000000fcf348a549ffc44d89ee4889e34883c4106a00e9b9eeffff"),
        ),
    ],
    "nohandler": [
        Piece(
            0x0,
            """\
    mov rax, 0x500000000000
    mov rax, [rax]
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex("48b80000000000500000488b00c70425f03f008000000000bf0200000048c7c6f03f0080e877f3ffff"),
        ),
    ],
    "priv": [
        Piece(
            0x0,
            """\
    mov rdi, 0xffffffff80003000
    call 0xffffffff80001000
    cmp r12, 1
    je 1f
    cmp r12, 2
    je 2f
    cmp r12, 3
    je 3f
    cmp r12, 4
    je 4f
    hlt
    jmp 9f
1:  mov rax, cr3
    mov r14, rax
    jmp 9f
2:  cli
    jmp 9f
3:  in al, 0x60
    jmp 9f
4:  mov ecx, 0x1234
    wrmsr
9:
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex(
                "48c7c700300080e8f4efffff4983fc0174154983fc0274174983fc0374144983fc047412f4eb160f20d84989c6eb0efa"
                "eb0be460eb07b9341200000f30c70425f03f008000000000bf0200000048c7c6f03f0080e847f3ffff"
            ),
        ),
        Piece(
            0x400,
            """\
gp_handler:
    mov rsi, rsp
    mov rdi, 0xffffffff80003800
    mov ecx, 8
    cld
    rep movsq
    mov r13, 1
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex(
                "4889e648c7c700380080b908000000fcf348a549c7c501000000c70425f03f008000000000bf0200000048c7c6f03f00"
                "80e86aefffff"
            ),
        ),
    ],
    "cpuid": [
        Piece(
            0x0,
            """\
    mov eax, 0x40000000
    xor ecx, ecx
    ud2
    .ascii "xen"
    cpuid
    mov r8, rbx
    mov r9, rcx
    mov r10, rdx
    mov eax, 0x40000000
    xor ecx, ecx
    cpuid
    mov r12, rbx
    mov r13, rcx
    mov r14, rdx
    mov eax, 1
    cpuid
    mov r15, rcx
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex(
                "b80000004031c90f0b78656e0fa24989d84989c94989d2b80000004031c90fa24989dc4989cd4989d6b8010000000fa2"
                "4989cfc70425f03f008000000000bf0200000048c7c6f03f0080e851f3ffff"
            ),
        ),
    ],
    "determinism": [
        Piece(
            0x0,
            """\
    xor r12, r12
    mov r13, 2000
1:  rdtsc
    shl rdx, 32
    or rax, rdx
    add r12, rax
    imul r12, r12, 3
    xor edi, edi
    call 0xffffffff80001220
    dec r13
    jnz 1b
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r14, rax
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex(
                "4d31e449c7c5d00700000f3148c1e2204809d04901c44d6be40331ffe8fff1ffff49ffcd75e40f3148c1e2204809d049"
                "89c6c70425f03f008000000000bf0200000048c7c6f03f0080e852f3ffff"
            ),
        ),
    ],
    "portio": [
        Piece(
            0x0,
            """\
    mov dword ptr [0xffffffff80003ff0], 1
    mov edi, 6
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff80001420
    mov ebx, 1000
    xor r12d, r12d
    mov edx, 0x61
1:  mov eax, 0x12345600
    in al, 0x42
    add r12, rax
    mov rax, -1
    shl rax, 32
    in eax, dx
    add r12, rax
    out 0x80, al
    xor edi, edi
    call 0xffffffff80001220
    dec ebx
    jnz 1b
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex(
                "c70425f03f008001000000bf0600000048c7c6f03f0080e804f4ffffbbe80300004531e4ba61000000b800563412e442"
                "4901c448c7c0ffffffff48c1e020ed4901c4e68031ffe8d5f1ffffffcb75dac70425f03f008000000000bf0200000048"
                "c7c6f03f0080e835f3ffff"
            ),
        ),
    ],
    "usersyscall": [
        Piece(
            0x0,
            """\
    xor edi, edi
    mov rsi, 0xffffffff80003100
    call 0xffffffff800013c0
    mov edi, 0xe02b
    mov rsi, 0xffffffff80003f00
    call 0xffffffff80001060
    mov dword ptr [0xffffffff80003200], 15
    mov qword ptr [0xffffffff80003208], r12
    mov rdi, 0xffffffff80003200
    mov esi, 1
    xor edx, edx
    mov r10d, 0x7ff0
    call 0xffffffff80001340
    mov r15, rax
    push 0xe02b
    push 0xffffffff80003e00
    push 0x202
    push 0xe033
    lea rax, [rip + user]
    push rax
    push 0
    jmp 0xffffffff800012e0
user:
    mov r13, 0x5555
    mov rcx, 0x7777
    syscall
    ud2
""",
            _hex(
                "31ff48c7c600310080e8b2f3ffffbf2be0000048c7c6003f0080e841f0ffffc70425003200800f0000004c8924250832"
                "008048c7c700320080be0100000031d241baf07f0000e8f5f2ffff4989c7682be0000068003e008068020200006833e0"
                "0000488d0508000000506a00e96ff2ffff49c7c55555000048c7c1777700000f050f0b"
            ),
        ),
        Piece(
            0x400,
            """\
syscall_cb:
    mov rbx, rsp
    mov rsi, rsp
    mov rdi, 0xffffffff80003800
    mov ecx, 7
    cld
    rep movsq
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex(
                "4889e34889e648c7c700380080b907000000fcf348a5c70425f03f008000000000bf0200000048c7c6f03f0080e86eef"
                "ffff"
            ),
        ),
    ],
    "remap": [
        Piece(
            0x0,
            """\
    mov r12, [0xffffffff80005000]
    mov rdi, 0xffffffff80005000
    mov rsi, rbx
    mov edx, 2
    call 0xffffffff800011c0
    mov r14, rax
    mov r13, [0xffffffff80005000]
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex(
                "4c8b24250050008048c7c7005000804889deba02000000e8a4f1ffff4989c64c8b2c2500500080c70425f03f00800000"
                "0000bf0200000048c7c6f03f0080e85df3ffff"
            ),
        ),
    ],
    "stackfault": [
        Piece(
            0x0,
            """\
    mov rdi, 0xffffffff80003000
    call 0xffffffff80001000
    cmp r12, 6
    jae 6f
    cmp r12, 1
    je 1f
    cmp r12, 2
    je 2f
    cmp r12, 3
    je 3f
    cmp r12, 4
    je 4f
    mov rbp, r14
    leave
    jmp 9f
1:  mov rbp, r14
    mov byte ptr [rbp], 0
    jmp 9f
2:  mov rax, r14
    sub rax, rsp
    mov byte ptr [rsp + rax], 0
    jmp 9f
3:  mov rax, r14
    mov byte ptr [rax], 0
    jmp 9f
4:  mov rbp, r14
    mov byte ptr fs:[rbp], 0
9:
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
6:  mov edi, 0xe02b
    mov rsi, 0xffffffff80003f00
    call 0xffffffff80001060
    mov dword ptr [0xffffffff80003200], 15
    mov qword ptr [0xffffffff80003208], rbx
    mov rdi, 0xffffffff80003200
    mov esi, 1
    xor edx, edx
    mov r10d, 0x7ff0
    call 0xffffffff80001340
    push 0xe02b
    push r14
    push 0x202
    push 0xe033
    lea rax, [rip + user]
    push rax
    push 0
    jmp 0xffffffff800012e0
user:
    cmp r12, 7
    je 7f
    cmp r12, 8
    je 8f
    cmp r12, 9
    je 5f
    push rax
    ud2
7:  ret
8:  mov byte ptr [rsp], 0
    ud2
5:  call 7b
    ud2
""",
            _hex(
                "48c7c700300080e8f4efffff4983fc06735f4983fc0174184983fc02741b4983fc0374214983fc0474234c89f5c9eb25"
                "4c89f5c6450000eb1c4c89f04829e0c6040400eb104c89f0c60000eb084c89f564c6450000c70425f03f008000000000"
                "bf0200000048c7c6f03f0080e82ff3ffffbf2be0000048c7c6003f0080e8deefffffc70425003200800f00000048891c"
                "250832008048c7c700320080be0100000031d241baf07f0000e892f2ffff682be00000415668020200006833e0000048"
                "8d0508000000506a00e912f2ffff4983fc07740f4983fc08740a4983fc09740a500f0bc3c60424000f0be8f4ffffff0f"
                "0b"
            ),
        ),
        Piece(
            0x400,
            """\
ss_handler:
    mov r15, 12
    mov rsi, rsp
    mov rdi, 0xffffffff80003800
    mov ecx, 8
    cld
    rep movsq
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex(
                "49c7c70c0000004889e648c7c700380080b908000000fcf348a5c70425f03f008000000000bf0200000048c7c6f03f00"
                "80e86aefffff"
            ),
        ),
        Piece(
            0x480,
            """\
gp_handler:
    mov r15, 13
    mov rsi, rsp
    mov rdi, 0xffffffff80003800
    mov ecx, 8
    cld
    rep movsq
    mov dword ptr [0xffffffff80003ff0], 0
    mov edi, 2
    mov rsi, 0xffffffff80003ff0
    call 0xffffffff800013a0
""",
            _hex(
                "49c7c70d0000004889e648c7c700380080b908000000fcf348a5c70425f03f008000000000bf0200000048c7c6f03f00"
                "80e8eaeeffff"
            ),
        ),
    ],
}
