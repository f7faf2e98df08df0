"""Pages of a long list read by their ids first."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet


class IdsFirstPaginator(Paginator):
    """A Paginator for querysets: a page's ids are found first, in the list's order, by a narrow query that an index
    answers however late the page is; then those rows alone are read whole, with their joins and annotations. A late
    page then walks an index instead of joining every row before it. A row gone between the two reads is left out."""

    def __init__(self, object_list: QuerySet[Any], per_page: int, orphans: int = 0) -> None:
        super().__init__(object_list, per_page, orphans=orphans)
        self.queryset = object_list

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        ids = list(self.queryset.values_list("pk", flat=True)[bottom:top])
        rows = {row.pk: row for row in self.queryset.filter(pk__in=ids)}
        return Page([rows[pk] for pk in ids if pk in rows], number, self)
