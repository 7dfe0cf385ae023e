"""Reading the official SDK's typed results in tests.

A tool result's `content` is a union of block kinds (text, image, audio, resource link, embedded
resource) and a resource's `contents` is text or blob. Tests that expect text say so here: the block
is checked to be text, so a wrong kind fails with the block it got instead of an AttributeError.
"""

from __future__ import annotations

import mcp_types as types


def text_of(result: types.CallToolResult, index: int = 0) -> str:
    """The text of content block `index` of a tool result, which must be a text block."""
    block = result.content[index]
    assert isinstance(block, types.TextContent), f"content[{index}] is not text: {block!r}"
    return block.text


def resource_text(result: types.ReadResourceResult, index: int = 0) -> str:
    """The text of contents item `index` of a resources/read result, which must be text."""
    item = result.contents[index]
    assert isinstance(item, types.TextResourceContents), f"contents[{index}] is not text: {item!r}"
    return item.text
