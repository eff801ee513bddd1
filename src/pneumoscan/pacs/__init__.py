"""Results as DICOM (SR and heat-map Secondary Capture) and a DICOMweb client to file them into a PACS."""
