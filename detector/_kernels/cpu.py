"""CPU hints for kernels whose data does not fit in the caches.

``prefetch(array, i)`` and ``prefetch2(array, i, j)`` ask the CPU to start
loading the cache line of ``array[i]`` (``array[i, j]``) while the kernel works
on something else: a read that would stall ~100 ns on memory then finds its
line arrived. They change no result and never fault (a prefetch of an address
outside any mapping is dropped by the CPU), so a stale or out-of-range index
costs a useless hint, not a wrong read; no bounds are checked, even in
bounds-checked builds, because nothing is read.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _emit_prefetch(context, builder, array_type, array_value, indices):  # type: ignore[no-untyped-def]
    view = context.make_array(array_type)(context, builder, array_value)
    pointer = cgutils.get_item_pointer(
        context, builder, array_type, view, indices, wraparound=False
    )
    i32 = ir.IntType(32)
    byte_pointer = builder.bitcast(pointer, ir.IntType(8).as_pointer())
    function = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(ir.VoidType(), [byte_pointer.type, i32, i32, i32]),
        "llvm.prefetch.p0",
    )
    # (address, 0 = read, 3 = keep in all cache levels, 1 = data cache)
    builder.call(
        function, [byte_pointer, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)]
    )
    return context.get_dummy_value()


@intrinsic
def prefetch(typingctx, array, index):  # type: ignore[no-untyped-def]
    """Hint: ``array[index]`` (a 1-D array) will be read soon."""
    sig = types.void(array, index)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return _emit_prefetch(context, builder, signature.args[0], args[0], [args[1]])

    return sig, codegen


@intrinsic
def prefetch2(typingctx, array, row, column):  # type: ignore[no-untyped-def]
    """Hint: ``array[row, column]`` (a 2-D array) will be read soon."""
    sig = types.void(array, row, column)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return _emit_prefetch(context, builder, signature.args[0], args[0], [args[1], args[2]])

    return sig, codegen
