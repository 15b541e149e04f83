"""The report stage: metrics files -> document blocks -> Markdown and HTML.

``inputs``    :func:`load_inputs` reads every metrics, eval and data file (:class:`ReportInputs`);
``figures``   :func:`draw_all` copies the grids, cuts them into labelled rows (epochs, classes)
              and draws the plots (``plots``) into ``<out>/figures``;
``verdict``   the tie rule, who wins each metric, and the opening summary in words;
``sections``  the text and table sections, inputs -> blocks; ``visuals`` those with figures;
``glossary``  "How to read this": every metric explained once, linked from every table;
``variants``  each model's settings as the text of the "Models compared" table;
``document``  the blocks and their Markdown; ``page`` their self-contained HTML;
``build``     :func:`build_blocks` (the order of the sections) and :func:`write_report`.
"""
