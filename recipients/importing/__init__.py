"""Imports of recipient files, one idea a module: what a person chooses (choices) within which
bounds (limits), reading a file (reading; workbooks for XLSX), checking each row (checking),
staging and checking the whole file in SQL (staging), and applying it in one transaction
(applying). The services that run an import are in recipients.import_services."""
