"""Pages of a long list read by their ids first, counted up to a bound when the list is filtered."""

from __future__ import annotations

import sys
from typing import Any

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property


class OpenPage(Page):
    """A page of a list not counted to its end: whether another page follows is what reading this one found."""

    def __init__(self, object_list: Any, number: int, paginator: Paginator, *, more: bool) -> None:
        super().__init__(object_list, number, paginator)
        self.more = more

    def has_next(self) -> bool:
        return self.more


class IdsFirstPaginator(Paginator):
    """A Paginator for querysets: a page's ids are found first, in the list's order, by a narrow query that an index
    answers however late the page is; then those rows alone are read whole, with their joins and annotations. A late
    page then walks an index instead of joining every row before it. A row gone between the two reads is left out.

    With `count_up_to`, the count stops there (`counted_all` says whether it reached the end): a filter that most
    rows match is not counted through every row. Past that count the number of pages is unknown: any page may be
    asked for, and each says whether another follows (`OpenPage`); one past the end gives the first page."""

    def __init__(
        self, object_list: QuerySet[Any], per_page: int, orphans: int = 0, *, count_up_to: int | None = None
    ) -> None:
        super().__init__(object_list, per_page, orphans=orphans)
        self.queryset = object_list
        self.count_up_to = count_up_to

    @cached_property
    def count(self) -> int:
        """The number of rows, or `count_up_to` + 1 when there are more."""
        if self.count_up_to is None:
            return super().count
        return self.queryset.order_by()[: self.count_up_to + 1].count()

    @property
    def counted_all(self) -> bool:
        return self.count_up_to is None or self.count <= self.count_up_to

    @cached_property
    def num_pages(self) -> int:
        # Not counted to its end: as many pages as an OFFSET may skip.
        return super().num_pages if self.counted_all else sys.maxsize // self.per_page

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        if not self.counted_all:
            return self._open_page(number, bottom)
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        ids = list(self.queryset.values_list("pk", flat=True)[bottom:top])
        return Page(self._rows(ids), number, self)

    def get_page(self, number: Any) -> Page:
        if self.counted_all:
            return super().get_page(number)
        try:
            return self.page(number)
        except (PageNotAnInteger, EmptyPage):
            return self.page(1)

    def _open_page(self, number: int, bottom: int) -> Page:
        ids = list(self.queryset.values_list("pk", flat=True)[bottom : bottom + self.per_page + 1])
        if not ids and number > 1:
            raise EmptyPage("That page contains no results")
        return OpenPage(self._rows(ids[: self.per_page]), number, self, more=len(ids) > self.per_page)

    def _rows(self, ids: list[Any]) -> list[Any]:
        rows = {row.pk: row for row in self.queryset.filter(pk__in=ids)}
        return [rows[pk] for pk in ids if pk in rows]
