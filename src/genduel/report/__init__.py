"""The report stage: metrics files -> document blocks -> Markdown and HTML.

``inputs``    :func:`load_inputs` reads every metrics, eval and data file (:class:`ReportInputs`);
``figures``   :func:`draw_all` copies and draws every figure into ``<out>/figures``;
``sections``  one function per section, inputs (and figure paths) -> blocks;
``variants``  each model's settings as the text of the "Models compared" table;
``document``  the blocks and their Markdown and HTML renderings;
``build``     :func:`build_blocks` (the order of the sections) and :func:`write_report`.
"""
