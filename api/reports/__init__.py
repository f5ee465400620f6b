"""Reports and exchange: the visit report and the monthly remote-monitoring report (PDF, drawn with
ReportLab on the server, no browser), the readings CSV export, and FHIR R4 resources.

Every clinical figure in a report comes from the summary module (alerts.summaries); this package only
lays it out, words it in the reader's language (en, zh-CN) and converts glucose for display
(vitals.units). The routes are api/routes/reports.py and api/routes/fhir.py.
"""
